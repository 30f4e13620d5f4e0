"""Bringing existing remote keys under management: `keyplan import` adopts one remote key into
state without replacing it, and `keyplan discover` (in `keyplan.discovery`) lists a provider's imported keys and writes
`key` blocks and import commands for them.

With bring-your-own-key, keyplan is the origin of a key's material: it generates it in a key
source and imports it wrapped. So keyplan can only manage a remote key whose material it
holds, which means state has a material version (source handle and fingerprint) for the
address: the key already exists at another target, or a previous apply generated it. A
remote key made from material keyplan never saw cannot be re-imported after loss, rotated
in step with the other targets, or proven to match, so it is refused.

Where the target can show that a key holds given material, the import shows it before
recording anything, through the provider's `prove_material` operation (for example a cloud that
accepts a re-import of existing material only when the bytes are identical). Where it cannot
without changing the key, the import records the key and says so.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from keyplan.config import key_spec
from keyplan.config.model import Config
from keyplan.diagnostics import Diagnostic, DiagnosticsError, Severity
from keyplan.plan.negotiate import negotiate
from keyplan.provider import (
    DescribeKeyRequest,
    KeySpec,
    KeyState,
    MaterialProofRequest,
    MaterialWitness,
    ProviderError,
    RemoteKey,
    SourceError,
    UpdateKeyRequest,
    Verdict,
    WrapOffer,
)
from keyplan.runtime import Session
from keyplan.state.model import ImportedVersion, KeyRecord, MaterialVersion, State, TargetRecord

T = TypeVar("T")

_NO_MATERIAL = (
    "keyplan manages bring-your-own-key keys: it generates each key's material in a key source and imports it, "
    "wrapped, into every target. It can only take over a remote key whose material it already holds (a material "
    "version in state: the key exists at another target, or an earlier apply generated it), because without the "
    "material it could not re-import it when the cloud loses or expires it, rotate it in step with the other "
    "targets, or prove what the key holds."
)


def _error(summary: str, detail: str, address: str | None = None) -> DiagnosticsError:
    return DiagnosticsError.single(summary, detail, address=address)


@dataclass
class ImportOutcome:
    """What `keyplan import` recorded and how sure it is."""

    record: TargetRecord
    material_version: int | None
    proven: bool
    notes: list[str] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)


def check_importable(config: Config, state: State, address: str, target: str, remote_id: str) -> KeyRecord:
    """Every refusal that needs no cloud: the address and target in the configuration, the
    material in state, and nothing recorded for this key or remote id already."""
    key = config.keys.get(address)
    if key is None:
        known = ", ".join(sorted(config.keys)[:5]) or "none"
        raise _error(
            f"No key {address} in the configuration",
            f"keyplan import brings a remote key under a key the configuration declares. Declare it first (keys "
            f"declared: {known}), and quote the address for your shell, e.g. 'key.app[\"payments\"]'.",
        )
    if target not in key.targets:
        raise _error(
            f"{target} is not one of {address}'s targets",
            f"{address} targets {', '.join(key.targets) or 'nothing'}. Add {target} to its `targets`, then run "
            "keyplan import again.",
            address,
        )
    record = state.keys.get(address)
    if record is None or not record.materials:
        raise _error(
            f"keyplan does not hold the material of {address}",
            f"State has no material version for {address}. {_NO_MATERIAL} To manage this key with keyplan, let "
            f"keyplan create it (run `keyplan apply`; it creates a new key at {target}) and move the workloads to it.",
            address,
        )
    existing = record.targets.get(target)
    if existing is not None:
        same = existing.remote_id == remote_id
        raise _error(
            f"{address} at {target} is already in state",
            (f"State already records {remote_id} for {address} at {target}; there is nothing to import."
             if same else
             f"State records {existing.remote_id} for {address} at {target}. To manage {remote_id} instead, remove "
             f"the key from state first (`keyplan state rm`), knowing that keyplan then no longer holds its material."),
            address,
        )
    for other, other_record in state.keys.items():
        held = other_record.targets.get(target)
        if held is not None and held.remote_id == remote_id:
            raise _error(
                f"{remote_id} is already in state as {other}",
                f"State records this remote key for {other} at {target}. One remote key belongs to one address; to "
                f"rename it use `keyplan state mv '{other}' '{address}'`.",
                address,
            )
    return record


def import_remote_key(
    session: Session, state: State, record: KeyRecord, target: str, remote_id: str, now: datetime
) -> ImportOutcome:
    """Describe, check, prove (where the cloud can) and tag the remote key; return the target
    record to put in state. The caller holds the state lock and writes the state."""
    address = record.address
    spec = key_spec(session.config.keys[address])
    provider = session.provider(target)
    live = _call(lambda: provider.describe(DescribeKeyRequest(remote_id=remote_id)).key, f"Cannot read {remote_id} at {target}", address)
    if live is None:
        raise _error(
            f"No key {remote_id} at {target}",
            f"{target} has no key with that id. Run `keyplan discover {target}` to list the imported keys there.",
            address,
        )
    _check_live(live, state, record, spec, target)
    outcome = ImportOutcome(
        record=TargetRecord(remote_id=live.remote_id), material_version=None, proven=False
    )
    if live.state is KeyState.PENDING_IMPORT:
        outcome.notes.append(
            f"The key holds no material yet; the next `keyplan apply` imports material v{_latest(record).version}."
        )
    else:
        _prove(session, state.managed_by, record, spec, target, live, now, outcome)
    tagged = _call(
        lambda: provider.update_key(
            UpdateKeyRequest(
                remote_id=live.remote_id, address=address, managed_by=state.managed_by, key=as_is(spec, live), current=live
            )
        ),
        f"Cannot tag {remote_id} at {target}",
        address,
    )
    outcome.record.labels = dict(tagged.labels)
    outcome.record.aliases = sorted(tagged.aliases)
    outcome.record.description = tagged.description
    outcome.record.enabled = tagged.enabled or tagged.state is KeyState.PENDING_IMPORT
    return outcome


def _latest(record: KeyRecord) -> MaterialVersion:
    latest = record.latest_material
    assert latest is not None  # check_importable refused keys without material
    return latest


def _check_live(live: RemoteKey, state: State, record: KeyRecord, spec: KeySpec, target: str) -> None:
    address = record.address
    if live.managed_by and live.managed_by != state.managed_by:
        raise _error(
            f"{live.remote_id} is managed by another keyplan state",
            f"Its keyplan-managed-by tag is {live.managed_by}; this state is {state.managed_by}. A key managed from "
            "two states would be changed by both. Remove the key from the other state (`keyplan state rm` there, "
            "and remove its keyplan-managed-by tag), then import it here.",
            address,
        )
    if not live.external:
        raise _error(
            f"{live.remote_id} was not made from imported material",
            f"The cloud generated this key's material, so keyplan does not hold it and never can. {_NO_MATERIAL}",
            address,
        )
    if live.algorithm != spec.algorithm.name:
        raise _error(
            f"{live.remote_id} is not a {spec.algorithm.name} key",
            f"The remote key is {live.algorithm or 'of a type keyplan does not import'}; {address} is "
            f"{spec.algorithm.name} (its material in state is {record.algorithm}). Import a key of the same type.",
            address,
        )
    if live.state in (KeyState.PENDING_DELETION, KeyState.DELETED):
        raise _error(
            f"{live.remote_id} is scheduled for deletion",
            f"Cancel the deletion at {target} first (it is {live.state.value}), then run keyplan import again.",
            address,
        )


def as_is(spec: KeySpec, live: RemoteKey) -> KeySpec:
    """The key spec with the remote key's own metadata, so tagging changes only keyplan's tags."""
    return spec.model_copy(
        update={
            "labels": dict(live.labels),
            "aliases": tuple(live.aliases),
            "description": live.description,
            "enabled": live.enabled or live.state is KeyState.PENDING_IMPORT,
        }
    )


def _prove(
    session: Session,
    managed_by: str,
    record: KeyRecord,
    spec: KeySpec,
    target: str,
    live: RemoteKey,
    now: datetime,
    outcome: ImportOutcome,
) -> None:
    """Ask the target's provider which material version the key holds (`Provider.prove_material`,
    newest version first), and record what it showed."""
    address = record.address
    source = session.source(record.source)
    provider = session.provider(target)
    offer = _offer(session, record, spec, target)
    challenge = secrets.token_bytes(32)
    unproven: tuple[MaterialVersion, str] | None = None
    for material in sorted(record.materials, key=lambda m: m.version, reverse=True):
        if material.fingerprint is None:
            continue  # dropped by a state format upgrade; `keyplan apply` recomputes it
        request = MaterialProofRequest(
            remote_id=live.remote_id,
            address=address,
            managed_by=managed_by,
            key=spec,
            material_version=material.version,
            fingerprint=material.fingerprint,
            challenge=challenge,
            offer=offer,
            valid_to=now + spec.expiry if spec.expiry is not None else None,
        )
        witness = MaterialWitness(source, material.handle, spec.algorithm, material.fingerprint)
        try:
            proof = provider.prove_material(request, witness)
        except ProviderError as error:
            raise _error(f"Cannot verify the material of {live.remote_id}: {error.summary}", error.detail, address) from None
        except SourceError as error:
            raise _error(f"Cannot use material v{material.version} of {address}: {error.summary}", error.detail, address) from None
        if proof.verdict is Verdict.PROVEN:
            outcome.proven = True
            outcome.material_version = material.version
            outcome.record.imports = [
                ImportedVersion(
                    material_version=material.version,
                    remote_version_id=proof.remote_version_id or live.current_version or "",
                    imported_at=now,
                    expires_at=proof.expires_at or live.expires_at,  # a proof never sets an expiry
                )
            ]
            outcome.record.current_material_version = material.version
            outcome.notes.append(
                f"{target} showed that the key holds material v{material.version} ({material.fingerprint}): "
                f"{proof.detail}."
            )
            return
        if proof.verdict is Verdict.CANNOT_PROVE:
            unproven = (material, proof.detail)
            break
    if unproven is None:
        versions = ", ".join(f"v{m.version} ({m.fingerprint})" for m in sorted(record.materials, key=lambda m: m.version))
        raise _error(
            f"{live.remote_id} does not hold keyplan's material for {address}",
            f"{target} showed that the key holds none of the material versions keyplan holds for {address} "
            f"({versions}), so it was made from other material. {_NO_MATERIAL} Nothing was recorded or changed.",
            address,
        )
    material, reason = unproven
    outcome.material_version = material.version
    outcome.record.imports = [
        ImportedVersion(
            material_version=material.version,
            remote_version_id=live.current_version or "",
            imported_at=now,
            expires_at=live.expires_at,
        )
    ]
    outcome.record.current_material_version = material.version
    outcome.warnings.append(
        Diagnostic(
            severity=Severity.WARNING,
            summary=f"{target} cannot prove which material {live.remote_id} holds",
            detail=f"{reason}, so keyplan recorded it as holding material v{material.version} "
            f"({material.fingerprint}) without proof. Check that it was made from that material (for example by "
            "decrypting at this target something encrypted at another target of the key); if it was not, "
            f"remove it from state with `keyplan state rm '{address}'` before relying on it.",
            address=address,
        )
    )


def _offer(session: Session, record: KeyRecord, spec: KeySpec, target: str) -> WrapOffer | None:
    """How the source can send this key's material to the target (for proofs by re-import)."""
    plugin, settings = session.provider_plugin(target)
    source = session.source(record.source)
    capabilities = _call(source.capabilities, f"Cannot open source {record.source}", record.address)
    chosen = negotiate(spec.algorithm, plugin.wrap_offers(settings, spec.algorithm), capabilities, source=record.source, target=target)
    return chosen.offer


def retag_remote_keys(config: Config, state: State, record: KeyRecord, destination: str) -> list[str]:
    """Rewrite keyplan-address on each remote key of `record` (`keyplan state mv`), leaving every
    other attribute as the target has it. Any failure stops before state changes."""
    from keyplan.algorithms import KeyUsage, get_algorithm

    algorithm = get_algorithm(record.algorithm)
    if algorithm is None:
        raise _error(
            f"Unknown algorithm {record.algorithm} in state",
            f"The state records {record.address} as {record.algorithm}, which this keyplan does not know. "
            "Use the keyplan version that wrote the state, or pass -retag=false.",
        )
    spec = KeySpec(address=destination, algorithm=algorithm, usage=KeyUsage(record.usage))
    done: list[str] = []
    with Session(config) as session:
        for target, target_record in sorted(record.targets.items()):
            if not target_record.exists_remotely or target_record.deletion_date is not None:
                continue
            if target not in config.providers:
                raise _error(
                    f"Cannot retag {record.address} at {target}: the provider is not in the configuration",
                    f"Its remote key {target_record.remote_id} carries the keyplan-address tag {record.address}. Put "
                    f"the provider block back, or pass -retag=false and correct the tag at the target.",
                )
            try:
                provider = session.provider(target)
                live = provider.describe(DescribeKeyRequest(remote_id=target_record.remote_id)).key
                if live is None:
                    continue  # gone: the next plan reports it
                provider.update_key(
                    UpdateKeyRequest(
                        remote_id=live.remote_id,
                        address=destination,
                        managed_by=state.managed_by,
                        key=as_is(spec, live),
                        current=live,
                    )
                )
            except ProviderError as error:
                raise _error(
                    f"Cannot retag {target_record.remote_id} at {target}: {error.summary}",
                    f"{error.detail} Nothing was moved in state. Fix the problem and run the command again, or pass "
                    "-retag=false.",
                ) from None
            done.append(f"{target} {live.remote_id}")
    return done


def _call(work: Callable[[], T], summary: str, address: str) -> T:
    try:
        return work()
    except ProviderError as error:
        raise _error(f"{summary}: {error.summary}", error.detail, address) from None
    except SourceError as error:
        raise _error(f"{summary}: {error.summary}", error.detail, address) from None
