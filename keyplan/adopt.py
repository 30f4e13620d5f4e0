"""Bringing existing remote keys under management: `keyplan import` adopts one remote key into
state without replacing it, and `keyplan discover` lists a provider's imported keys and writes
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

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from keyplan.config import key_spec
from keyplan.config.model import Config
from keyplan.diagnostics import Diagnostic, DiagnosticsError, Severity
from keyplan.escaping import for_terminal
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


# ---------------------------------------------------------------------------------------------
# discover
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Discovered:
    """One imported key found at a target, and what keyplan can do with it."""

    key: RemoteKey
    status: str  # "managed" (in state here), "tagged" (this state's tags, not in state), "other", "unmanaged"
    address: str | None  # the key address keyplan knows it by, when any
    holds_material: bool


def classify(keys: list[RemoteKey], state: State, target: str) -> list[Discovered]:
    recorded = {tr.remote_id: a for a, r in state.keys.items() for t, tr in r.targets.items() if t == target}
    found = []
    for key in sorted(keys, key=lambda k: k.remote_id):
        if key.remote_id in recorded:
            address = recorded[key.remote_id]
            found.append(Discovered(key, "managed", address, True))
        elif key.managed_by and key.managed_by != state.managed_by:
            found.append(Discovered(key, "other", key.address, False))
        elif key.managed_by == state.managed_by and key.address:
            held = key.address in state.keys and bool(state.keys[key.address].materials)
            found.append(Discovered(key, "tagged", key.address, held))
        else:
            found.append(Discovered(key, "unmanaged", None, False))
    return found


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _hcl_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")


def _hcl_key(name: str) -> str:
    return name if _IDENT.fullmatch(name) else _hcl_string(name)


def _block_name(found: Discovered, taken: set[str]) -> str:
    if found.address:
        base = found.address.removeprefix("key.").split("[", 1)[0]
    elif found.key.aliases:
        base = found.key.aliases[0].removeprefix("alias/")
    else:
        base = found.key.remote_id.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9_-]", "_", base).strip("_") or "imported"
    if not _IDENT.fullmatch(name):
        name = "key_" + name
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    taken.add(unique)
    return unique


def _quote_shell(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def render_discovery(target: str, found: list[Discovered], state: State, config: Config, generated_at: datetime) -> str:
    """HCL `key` blocks for the keys found, commented out where keyplan cannot manage them,
    and the `keyplan import` commands to run (as comments)."""
    default_source = next(iter(sorted(config.sources)), "KIND.NAME")
    lines = [
        f"# Imported (BYOK) keys found at {target} by `keyplan discover` at {generated_at.isoformat(timespec='seconds')}.",
        "# Blocks written as comments are keys keyplan cannot manage: it does not hold their material.",
        "",
    ]
    commands: list[str] = []
    taken = {a.removeprefix("key.").split("[", 1)[0] for a in config.keys}
    for item in found:
        key = item.key
        lines.append(f"# {key.remote_id}: {key.algorithm or 'an algorithm keyplan does not import'}, {key.state.value}")
        if item.status == "managed":
            lines += [f"#   already managed by this state as {item.address}; nothing to do.", ""]
            continue
        refusal = _refusal(item)
        declared = config.keys.get(item.address or "")
        if refusal is None and declared is not None:
            lines.append(f"#   {item.address}: tagged by this state but not in state; keyplan holds its material.")
            if target not in declared.targets:
                lines.append(f"#   Add provider.{target} to the `targets` of {item.address}, then import it.")
        else:
            lines.append(f"#   {refusal or 'tagged by this state but not in state; keyplan holds its material'}.")
            name = _block_name(item, taken)
            address = item.address or f"key.{name}"
            source = state.keys[address].source if address in state.keys else default_source
            block = _key_block(name, key, source, target, item.address)
            lines += block if refusal is None else ["# " + line if line else "#" for line in block]
        address = item.address or f"key.{_block_name(item, set())}"
        command = f"keyplan import {_quote_shell(address)} {target} {_quote_shell(key.remote_id)}"
        commands.append(command if refusal is None else f"{command}  # refused: {refusal.split(':')[0]}")
        lines.append("")
    lines.append("# Then bring the keys under management without replacing them:")
    lines += [f"#   {c}" for c in commands] or ["#   (nothing to import)"]
    # Remote ids, tags and descriptions come from the cloud: none may start a line of its own
    # (which would turn a comment into configuration) or reach the terminal as a control.
    return "\n".join(for_terminal(line) for line in lines) + "\n"


def _refusal(item: Discovered) -> str | None:
    """Why `keyplan import` would refuse this key, or None when it can take it."""
    if item.status == "other":
        return f"managed by another keyplan state ({item.key.managed_by}); import is refused while it is"
    if not item.holds_material:
        return (
            "keyplan does not hold this key's material: with bring-your-own-key the material must come from a "
            "keyplan key source, and state has no material version for it"
        )
    if item.key.algorithm is None:
        return "its algorithm is not one keyplan imports"
    return None


def _key_block(name: str, key: RemoteKey, source: str, target: str, address: str | None) -> list[str]:
    block = []
    if address and "[" in address:
        instance = address.split("[", 1)[1].rstrip("]")
        block.append(f"# instance {instance} of key \"{name}\": add {instance} to that block's for_each instead")
    block += [f'key "{name}" {{']
    block.append(f"  algorithm = {_hcl_string(key.algorithm or 'UNKNOWN')}")
    block.append(f"  source    = source.{source}")
    block.append(f"  targets   = [provider.{target}]")
    if key.description:
        block.append(f"  description = {_hcl_string(key.description)}")
    if key.aliases:
        block.append(f"  aliases   = [{', '.join(_hcl_string(a) for a in key.aliases)}]")
    if not key.enabled and key.state is not KeyState.PENDING_IMPORT:
        block.append("  enabled   = false")
    if key.labels:
        block.append("  labels = {")
        block += [f"    {_hcl_key(k)} = {_hcl_string(v)}" for k, v in sorted(key.labels.items())]
        block.append("  }")
    if key.expires_at is not None:
        block.append(f"  # its material expires at {key.expires_at.isoformat(timespec='seconds')}")
    block.append("}")
    return block
