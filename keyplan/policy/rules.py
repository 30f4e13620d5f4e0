"""The built-in rules: good practice for bring-your-own-key setups, each with an id, a one-line
rationale, a fix, a default severity and scope, and parameters the `policy` block may set.

A rule's check reads `PolicyInputs` (the configuration, the plugins' static capabilities, and
the state and live inventory when the command has them) and yields `Violation`s; the engine
turns those into findings (severity, scope, exceptions). Rules speak of clouds only through
the plugins' contracts (`SourceCapabilities`, `ProviderPlugin.lifecycle_support`,
`ProviderPlugin.wrap_offers`), never by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import Field

from keyplan.algorithms import ALGORITHMS, KeyUsage, MaterialKind, get_algorithm
from keyplan.policy.model import FindingSeverity, Phase
from keyplan.policy.rule import PRODUCTION, PolicyInputs, Rule, RuleParams, Violation
from keyplan.policy.selectors import KeyFacts, kind_of
from keyplan.provider import KeyState, RemoteKey

if TYPE_CHECKING:
    from keyplan.config.model import KeyConfig

# ---------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------


class LabelsParams(RuleParams):
    required: tuple[str, ...] = Field(default=("app", "env"), description="Labels every key must carry.")


def _labels(inputs: PolicyInputs, key: KeyConfig, params: LabelsParams) -> Iterator[Violation]:
    missing = [label for label in params.required if not key.labels.get(label, "").strip()]
    if missing:
        yield Violation(
            key.address,
            f"The key has no {' or '.join(repr(m) for m in missing)} label, so nobody can tell which "
            "application and environment it serves.",
            key.range_of("labels"),
        )


class SinglePurposeParams(RuleParams):
    labels: tuple[str, ...] = Field(default=("app", "env"), description="Labels whose value must name one thing.")
    shared_values: tuple[str, ...] = Field(
        default=("*", "all", "any", "shared", "common", "global", "default"),
        description="Label values that stand for several applications or environments.",
    )


_SEPARATORS = (",", ";", "|", "+", "&")  # "prod,staging", "a|b": several values in one


def _single_purpose(inputs: PolicyInputs, key: KeyConfig, params: SinglePurposeParams) -> Iterator[Violation]:
    for label in params.labels:
        value = key.labels.get(label)
        if value is None:
            continue
        if value.strip().lower() in params.shared_values or any(s in value.strip() for s in _SEPARATORS):
            yield Violation(
                key.address,
                f"The {label!r} label value {value!r} names several {label} values, so one key serves all of them.",
                key.range_of("labels"),
            )
    for other in sorted(inputs.sharing(key.address)):
        differ = [label for label in params.labels if inputs.labels_of(other).get(label) != key.labels.get(label)]
        if differ:
            yield Violation(
                key.address,
                f"The state records the same material or remote key for {other}, whose "
                f"{' and '.join(differ)} label{'s' if len(differ) > 1 else ''} differ, so one key serves two "
                f"{' and two '.join(differ)}s.",
                key.range,
                fix=f"Give each {' and '.join(differ)} its own key: rotate one of the two keys "
                "(keyplan plan -replace) so it gets material of its own.",
            )


# ---------------------------------------------------------------------------------------------
# Material source and algorithms
# ---------------------------------------------------------------------------------------------


def _hardware_source(inputs: PolicyInputs, key: KeyConfig, params: RuleParams) -> Iterator[Violation]:
    capabilities = inputs.sources.get(key.source)
    if capabilities is not None and not capabilities.wraps_in_hardware:
        hardware = sorted(address for address, c in inputs.sources.items() if c.wraps_in_hardware)
        yield Violation(
            key.address,
            f"The key's material comes from {key.source}, which is not a hardware source: the material "
            "exists in software outside an HSM.",
            key.range_of("source"),
            fix=f"Set the key's source to the hardware source {' or '.join('source.' + h for h in hardware)}."
            if hardware
            else None,
        )


class StrengthParams(RuleParams):
    min_rsa_bits: int = Field(default=3072, ge=1024, description="Smallest RSA modulus allowed.")
    min_ec_bits: int = Field(default=256, ge=128, description="Smallest elliptic curve allowed.")
    min_symmetric_bits: int = Field(default=256, ge=128, description="Smallest symmetric key allowed.")
    min_hmac_bits: int = Field(default=256, ge=128, description="Smallest HMAC key allowed.")


def _algorithm_strength(inputs: PolicyInputs, key: KeyConfig, params: StrengthParams) -> Iterator[Violation]:
    algorithm = get_algorithm(key.algorithm)
    if algorithm is None:
        return
    minimum = {
        MaterialKind.RSA: params.min_rsa_bits,
        MaterialKind.EC: params.min_ec_bits,
        MaterialKind.SYMMETRIC: params.min_symmetric_bits,
        MaterialKind.HMAC: params.min_hmac_bits,
    }[algorithm.kind]
    if algorithm.bits < minimum:
        stronger = sorted(a.name for a in ALGORITHMS.values() if a.kind is algorithm.kind and a.bits >= minimum)
        yield Violation(
            key.address,
            f"{algorithm.name} is a {algorithm.bits}-bit {algorithm.kind.value} key; the policy asks for at least "
            f"{minimum} bits.",
            key.range_of("algorithm"),
            fix=f"Use {' or '.join(stronger)}." if stronger else None,
        )


class SigningParams(RuleParams):
    prefer: str = Field(default="EC_P256", description="The asymmetric signing algorithm to suggest.")


def _asymmetric_signing(inputs: PolicyInputs, key: KeyConfig, params: SigningParams) -> Iterator[Violation]:
    algorithm = get_algorithm(key.algorithm)
    preferred = get_algorithm(params.prefer)
    if algorithm is None or preferred is None or algorithm.kind is not MaterialKind.HMAC:
        return
    targets = [inputs.targets[t] for t in key.targets if t in inputs.targets]
    # Only where every target can take the asymmetric key instead.
    if targets and all(plugin.wrap_offers(settings, preferred) for plugin, settings in targets):
        yield Violation(
            key.address,
            f"The key authenticates with {algorithm.name}, a shared secret every verifier must hold, while all its "
            f"targets can import {preferred.name} for signatures that verify with a public key.",
            key.range_of("algorithm"),
        )


def _hmac_separate(inputs: PolicyInputs, key: KeyConfig, params: RuleParams) -> Iterator[Violation]:
    algorithm = get_algorithm(key.algorithm)
    if algorithm is None or algorithm.kind is not MaterialKind.HMAC or inputs.state is None:
        return
    for other in sorted(inputs.sharing(key.address)):
        record = inputs.state.keys[other]
        if record.usage in (KeyUsage.ENCRYPT.value, KeyUsage.DECRYPT.value):
            yield Violation(
                key.address,
                f"The state records this HMAC key's material also for {other}, an {record.algorithm} key used to "
                f"{record.usage}: the same secret both authenticates and encrypts.",
                key.range_of("algorithm"),
            )


# ---------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------


def _lifecycle(inputs: PolicyInputs, key: KeyConfig) -> list[tuple[str, bool, bool]]:
    """(target, can rotate, can expire) for each target whose plugin is known."""
    from keyplan.config.validate import key_spec

    if get_algorithm(key.algorithm) is None:
        return []
    spec = key_spec(key)
    result = []
    for target in key.targets:
        if target in inputs.targets:
            plugin, settings = inputs.targets[target]
            support = plugin.lifecycle_support(settings, spec)
            result.append((target, support.rotation, support.expiry))
    return result


class MaxDaysParams(RuleParams):
    max_days: int = Field(default=365, ge=1, description="The longest period allowed, in days.")


def _rotation(inputs: PolicyInputs, key: KeyConfig, params: MaxDaysParams) -> Iterator[Violation]:
    support = _lifecycle(inputs, key)
    if not support or not all(rotates for _, rotates, _ in support):
        return  # a target that cannot rotate this key makes a rotation block an error of its own
    limit = timedelta(days=params.max_days)
    if key.rotation is None:
        yield Violation(key.address, "The key declares no rotation, so its material never changes.", key.range)
    elif key.rotation > limit:
        yield Violation(
            key.address,
            f"The key rotates every {key.rotation.days} days; the policy allows at most {params.max_days}.",
            key.range_of("rotation"),
        )


def _expiry(inputs: PolicyInputs, key: KeyConfig, params: MaxDaysParams) -> Iterator[Violation]:
    expiring = [target for target, _, expires in _lifecycle(inputs, key) if expires]
    if not expiring:
        return
    limit = timedelta(days=params.max_days)
    if key.expiry is None:
        yield Violation(
            key.address,
            f"The key's material never expires, though {', '.join(expiring)} can let it expire.",
            key.range_of("expiry"),
        )
    elif key.expiry > limit:
        yield Violation(
            key.address,
            f"The key's material expires {key.expiry.days} days after import; the policy allows at most "
            f"{params.max_days}.",
            key.range_of("expiry"),
        )


def _prevent_destroy(inputs: PolicyInputs, key: KeyConfig, params: RuleParams) -> Iterator[Violation]:
    if not key.prevent_destroy:
        yield Violation(
            key.address,
            "The key can be scheduled for deletion by removing its block; data encrypted under it would be lost.",
            key.range,
        )


class CrossCloudParams(RuleParams):
    intent_label: str = Field(default="multicloud", description="The label that declares sharing on purpose.")
    intent_value: str = Field(default="true", description="The value that label must have.")


def _cross_cloud(inputs: PolicyInputs, key: KeyConfig, params: CrossCloudParams) -> Iterator[Violation]:
    kinds = sorted({kind_of(t) for t in key.targets})
    if len(kinds) > 1 and key.labels.get(params.intent_label) != params.intent_value:
        yield Violation(
            key.address,
            f"The same material is imported into {len(kinds)} different clouds ({', '.join(kinds)}), and the key "
            "does not declare that this is intended: a breach of one cloud exposes data in the others.",
            key.range_of("targets"),
            fix=f'Split the key per cloud, or declare the sharing with the label {params.intent_label} = '
            f'"{params.intent_value}".',
        )


# ---------------------------------------------------------------------------------------------
# Live rules
# ---------------------------------------------------------------------------------------------

_DELETING = (KeyState.PENDING_DELETION, KeyState.DELETED)


class LingeringParams(RuleParams):
    max_days: int = Field(default=30, ge=0, description="How long a key may stay pending deletion or disabled.")


def _lingering(inputs: PolicyInputs, params: LingeringParams) -> Iterator[tuple[KeyFacts, Violation]]:
    limit = inputs.now + timedelta(days=params.max_days)
    for target, keys in sorted((inputs.live or {}).items()):
        for remote in keys.values():
            if remote.state not in _DELETING or remote.deletion_date is None:
                continue
            address = _address_of(inputs, target, remote)
            facts = _live_facts(inputs, address, target, remote)
            if remote.deletion_date > limit:
                message = (
                    f"The key is {remote.state.value.replace('_', ' ')} at {target} until "
                    f"{remote.deletion_date.date().isoformat()}, more than {params.max_days} days from now: it stays "
                    "unusable yet recoverable all that time."
                )
            elif remote.deletion_date < inputs.now:
                message = (
                    f"The key's deletion at {target} was due on {remote.deletion_date.date().isoformat()} and the "
                    "cloud still holds it, unusable."
                )
            else:
                continue
            key = inputs.config.keys.get(address)
            yield facts, Violation(address, message, key.range if key else None, target=target)


def _address_of(inputs: PolicyInputs, target: str, remote: RemoteKey) -> str:
    if remote.address:
        return remote.address
    for address, record in (inputs.state.keys if inputs.state else {}).items():
        target_record = record.targets.get(target)
        if target_record is not None and target_record.remote_id == remote.remote_id:
            return address
    return remote.remote_id


def _live_facts(inputs: PolicyInputs, address: str, target: str, remote: RemoteKey) -> KeyFacts:
    key = inputs.config.keys.get(address)
    if key is not None:
        return inputs.facts(key)
    return KeyFacts(address=address, labels=dict(remote.labels), target_kinds=frozenset({kind_of(target)}))


class AgeParams(RuleParams):
    grace_days: int = Field(default=0, ge=0, description="Days past the rotation period before it is a finding.")


def _material_age(inputs: PolicyInputs, params: AgeParams) -> Iterator[tuple[KeyFacts, Violation]]:
    if inputs.live is None or inputs.state is None:
        return
    for address, key in sorted(inputs.config.keys.items()):
        record = inputs.state.keys.get(address)
        if key.rotation is None or record is None:
            continue
        for target in key.targets:
            target_record = record.targets.get(target)
            live = inputs.live.get(target, {}).get(target_record.remote_id) if target_record else None
            if target_record is None or live is None or target_record.current_material_version is None:
                continue
            created = _current_material_created(inputs, address, target, live)
            if created is None:
                continue
            age = inputs.now - created
            if age > key.rotation + timedelta(days=params.grace_days):
                yield inputs.facts(key), Violation(
                    address,
                    f"The material current at {target} was made {age.days} days ago, past the key's rotation "
                    f"period of {key.rotation.days} days.",
                    key.range_of("rotation"),
                    target=target,
                )


def _current_material_created(inputs: PolicyInputs, address: str, target: str, live: RemoteKey) -> datetime | None:
    """When the material a cloud uses now was made: the state's record of that material version,
    or the cloud's own version date when the state has none. The older of the two wins."""
    assert inputs.state is not None
    record = inputs.state.keys[address]
    target_record = record.targets[target]
    dates: list[datetime] = []
    if target_record.current_material_version is not None:
        material = record.material(target_record.current_material_version)
        if material is not None:
            dates.append(material.created_at)
    for version in live.versions or ():
        if version.current and version.created_at is not None:
            dates.append(version.created_at)
    return min(dates) if dates else None


# ---------------------------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------------------------

RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in [
        Rule(
            id="labels",
            title="Keys say which application and environment they serve",
            rationale="One key per application and environment needs every key to say which ones it serves.",
            fix='Add the labels to the key, e.g. labels = { app = "payments", env = "prod" }.',
            severity=FindingSeverity.WARNING,
            phase=Phase.CONFIG,
            params=LabelsParams,
            check=_labels,
        ),
        Rule(
            id="single-purpose",
            title="No key serves two applications or environments",
            rationale="A key shared by environments or applications lets a breach of one reach the others.",
            fix="Declare one key per application and environment (for_each over them) with one value per label.",
            severity=FindingSeverity.ERROR,
            phase=Phase.CONFIG,
            params=SinglePurposeParams,
            check=_single_purpose,
        ),
        Rule(
            id="hardware-source",
            title="Production material comes from an HSM",
            rationale="Material generated and wrapped inside an HSM never exists in software memory or files.",
            fix="Declare a source whose plugin generates and wraps in hardware (a PKCS#11 token) and set the key's source to it.",
            severity=FindingSeverity.ERROR,
            phase=Phase.CONFIG,
            scope=PRODUCTION,
            check=_hardware_source,
        ),
        Rule(
            id="algorithm-strength",
            title="Key sizes meet the minimum",
            rationale="Short keys fall to brute force within the life of the data they protect.",
            fix="Choose a larger algorithm of the same kind.",
            severity=FindingSeverity.ERROR,
            phase=Phase.CONFIG,
            params=StrengthParams,
            check=_algorithm_strength,
        ),
        Rule(
            id="asymmetric-signing",
            title="Asymmetric keys for signatures where the clouds support them",
            rationale="An asymmetric signature verifies with a public key, so verifiers never hold the secret.",
            fix="Use an asymmetric signing algorithm (EC_P256, EC_P384, RSA_3072) with usage = \"sign\".",
            severity=FindingSeverity.INFO,
            phase=Phase.CONFIG,
            params=SigningParams,
            check=_asymmetric_signing,
        ),
        Rule(
            id="hmac-separate",
            title="HMAC material is never used for encryption",
            rationale="Material used both to authenticate and to encrypt lets a weakness in one use break the other.",
            fix="Rotate one of the keys (keyplan plan -replace) so each has material of its own.",
            severity=FindingSeverity.ERROR,
            phase=Phase.STATE,
            check=_hmac_separate,
        ),
        Rule(
            id="rotation",
            title="Rotation declared, at most every N days",
            rationale="Regular rotation bounds how much data one material protects and makes regenerating routine.",
            fix='Add rotation { every = "90d" } to the key, at most the policy\'s max_days.',
            severity=FindingSeverity.WARNING,
            phase=Phase.CONFIG,
            params=MaxDaysParams,
            check=_rotation,
        ),
        Rule(
            id="expiry",
            title="Material expires within N days where the cloud supports it",
            rationale="Expiring material stops working by itself if rotation or a decommissioning is forgotten.",
            fix='Add expiry { after = "365d" } to the key, at most the policy\'s max_days.',
            severity=FindingSeverity.WARNING,
            phase=Phase.CONFIG,
            params=MaxDaysParams,
            check=_expiry,
        ),
        Rule(
            id="prevent-destroy",
            title="Production keys are protected from deletion",
            rationale="Deleting a key destroys every piece of data encrypted under it.",
            fix="Add lifecycle { prevent_destroy = true } to the key.",
            severity=FindingSeverity.ERROR,
            phase=Phase.CONFIG,
            scope=PRODUCTION,
            check=_prevent_destroy,
        ),
        Rule(
            id="cross-cloud-material",
            title="The same material in several clouds only on purpose",
            rationale="Material imported into several clouds is exposed by a breach of any of them.",
            fix="Split the key per cloud, or declare the sharing with the intent label.",
            severity=FindingSeverity.WARNING,
            phase=Phase.CONFIG,
            params=CrossCloudParams,
            check=_cross_cloud,
        ),
        Rule(
            id="lingering-deletion",
            title="No key left pending deletion for long",
            rationale="A key pending deletion is unusable yet recoverable: decide, restore it or let it go.",
            fix="Restore the key (keep it in the configuration and apply) or shorten the deletion window.",
            severity=FindingSeverity.WARNING,
            phase=Phase.LIVE,
            params=LingeringParams,
            live_check=_lingering,
        ),
        Rule(
            id="material-age",
            title="No material in a cloud older than its rotation period",
            rationale="Material past its rotation period means rotation is declared but not happening.",
            fix="Run keyplan apply, which imports new material for keys whose rotation is due.",
            severity=FindingSeverity.ERROR,
            phase=Phase.LIVE,
            params=AgeParams,
            live_check=_material_age,
        ),
    ]
}
