"""Azure BYOK transfer files (.byok): a key's material wrapped for a vault's key-exchange key,
for people who must upload it themselves (the Azure portal, `az keyvault key import --byok-file`).

`export` reads the configuration and the state, finds or creates the vault's key-exchange key
through the Azure provider, has the key source wrap the key's current material for it
(CKM_RSA_AES_KEY_WRAP with SHA-1, the only variant Azure's specification describes) through
keyplan's one import sequence, and writes the transfer blob. The material never leaves the
source unwrapped; output names the KEK and the command to run next, never the material. It
writes no state: the key-exchange key is found again by name on every run.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from keyplan.algorithms import ALGORITHMS, Algorithm, KeyUsage
from keyplan.apply.audit import AuditLog
from keyplan.config.model import Config
from keyplan.config.suggestions import did_you_mean
from keyplan.diagnostics import DiagnosticsError, SourceRange
from keyplan.files import write_atomically
from keyplan.operations.audit import audit_log
from keyplan.plan.negotiate import negotiate
from keyplan.provider import (
    EnsurePrerequisiteRequest,
    ImportParametersRequest,
    KeySource,
    KeySpec,
    ProviderError,
    ProviderPlugin,
    ProviderSettings,
    SourceError,
    WrapOffer,
)
from keyplan.state.model import KeyRecord, MaterialVersion, State
from keyplan.transfer import prepare_import, source_wrapper

AZURE = "azure"


@dataclass(frozen=True)
class ExportRequest:
    """What to export, as named on the command line."""

    address: str
    vault: str  # provider address, "azure.hsm" (a leading "provider." is accepted)
    output: Path


@dataclass(frozen=True)
class ExportResult:
    kek_kid: str
    material: MaterialVersion
    algorithm: Algorithm
    usage: KeyUsage
    key_name: str
    vault_url: str


def export(config: Config, state: State, request: ExportRequest) -> ExportResult:
    """Find the KEK, wrap the material for it in the source, write the transfer file; the audit
    trail records the export before anything is asked of the vault, and its outcome."""
    record = _record(config, state, request.address)
    material = record.latest_material
    assert material is not None  # _record refuses keys without material
    _check_vault(config, request.vault, request.address)
    if record.source not in config.sources:
        raise DiagnosticsError.single(
            f"The source of {request.address} is no longer declared",
            f"The state says {request.address} was generated in {record.source}, which the configuration no longer "
            f"declares. Declare source {record.source} again to export this key.",
            address=request.address,
        )
    audit = audit_log(config)
    entry = {"action": "export_byok", "address": request.address, "target": request.vault, "remote_id": None}
    audit.record({**entry, "outcome": "started", "detail": f"export to {request.output}"})
    try:
        return _export(config, state, request, record, material, audit)
    except DiagnosticsError as error:
        audit.record({**entry, "outcome": "failed", "detail": next(iter(error.diagnostics)).summary})
        raise


def _export(
    config: Config, state: State, request: ExportRequest, record: KeyRecord, material: MaterialVersion, audit: AuditLog
) -> ExportResult:
    from keyplan.runtime import Session
    from providers.azure.mapping import key_name_for
    from providers.azure.provider import AzureProvider
    from providers.azure.settings import AzureSettings

    with Session(config) as session:
        plugin, settings = session.provider_plugin(request.vault)
        azure = cast(AzureSettings, settings)
        spec = _spec(record, _range(config, request.address))
        problems = plugin.check_key(settings, request.vault, spec)
        if problems.has_errors():
            raise DiagnosticsError(problems.errors)
        source = session.source(record.source)
        provider = session.provider(request.vault)
        assert isinstance(provider, AzureProvider)
        try:
            offer = _offer(plugin, settings, spec, source, request.vault)
            [kek_spec] = plugin.prerequisites(settings, spec, offer)
            known = state.prerequisites.get(request.vault, {}).get(kek_spec.id)
            kek = provider.ensure_prerequisite(EnsurePrerequisiteRequest(spec=kek_spec, known=known))
            prepared = prepare_import(
                provider,
                ImportParametersRequest(
                    remote_id=provider.remote_id_for(key_name_for(record.address)),
                    key=spec,
                    offer=offer,
                    prerequisites={kek.id: kek},
                ),
                source_wrapper(source, material.handle, spec.algorithm),
            )
            blob = provider.transfer_blob(prepared.parameters, prepared.wrapped.blob)
        except ProviderError as error:
            raise DiagnosticsError.single(f"{request.vault}: {error.summary}", error.detail) from None
        except SourceError as error:
            raise DiagnosticsError.single(f"{record.source}: {error.summary}", error.detail) from None
    # like every path keyplan reads or writes, a relative one is taken from the -chdir directory
    write_atomically(
        request.output if request.output.is_absolute() else Path(config.directory) / request.output, blob, mode=0o600
    )
    kek_kid = str(json.loads(blob)["header"]["kid"])
    audit.record(
        {
            "action": "export_byok",
            "address": request.address,
            "target": request.vault,
            "remote_id": kek_kid,
            "outcome": "ok",
            "detail": f"material v{material.version} wrapped for the key-exchange key, written to {request.output}",
        }
    )
    return ExportResult(
        kek_kid=kek_kid,
        material=material,
        algorithm=spec.algorithm,
        usage=spec.usage,
        key_name=key_name_for(record.address),
        vault_url=azure.vault_url,
    )


def _record(config: Config, state: State, address: str) -> KeyRecord:
    record = state.keys.get(address)
    if record is not None and record.latest_material is not None:
        return record
    if record is None and address not in config.keys:
        known = sorted(set(config.keys) | set(state.keys))
        raise DiagnosticsError.single(
            f"No key {address}",
            f"Neither the configuration nor the state has a key at {address}."
            + did_you_mean(address, known)
            + " Give the address as plan shows it, e.g. key.data or key.data[\"prod\"] (quote it for the shell).",
            address=address,
        )
    raise DiagnosticsError.single(
        f"{address} has no material yet",
        "keyplan generates a key's material during apply, in the key's source, and records it in state. Run "
        f"`keyplan apply -target='{address}'` first, then export it.",
        range=config.keys[address].range if address in config.keys else None,
        address=address,
    )


def _check_vault(config: Config, vault: str, address: str) -> None:
    block = config.providers.get(vault)
    if block is None:
        azure = sorted(a for a, b in config.providers.items() if b.kind == AZURE)
        listing = f" The Azure providers declared are: {', '.join(azure)}." if azure else ""
        raise DiagnosticsError.single(
            f"No provider {vault}",
            f"-vault names the Azure provider (vault) to export {address} for, as KIND.NAME."
            + did_you_mean(vault, config.providers)
            + listing
            + ' Declare a `provider "azure" "NAME"` block with the vault_url of the vault.',
            address=address,
        )
    if block.kind != AZURE:
        raise DiagnosticsError.single(
            f"{vault} is not an Azure provider",
            f"export-byok writes Azure Key Vault / Managed HSM transfer files (.byok), and {vault} is a "
            f"{block.kind} provider. For {block.kind}, add it to the key's targets and let `keyplan apply` import "
            "the material; for Azure, pass -vault with an azure provider.",
            range=block.range,
            address=address,
        )


def _spec(record: KeyRecord, range_: SourceRange | None) -> KeySpec:
    algorithm = ALGORITHMS.get(record.algorithm)
    if algorithm is None:
        raise DiagnosticsError.single(
            f"Unknown algorithm {record.algorithm} in state",
            f"The state records {record.address} as {record.algorithm}, which this keyplan does not know. "
            "Use the keyplan version that wrote the state.",
        )
    # Only what the transfer file depends on: labels, aliases and description are not part of it.
    return KeySpec(address=record.address, algorithm=algorithm, usage=KeyUsage(record.usage), range=range_)


def _range(config: Config, address: str) -> SourceRange | None:
    key = config.keys.get(address)
    return key.range if key is not None else None


def _offer(
    plugin: ProviderPlugin[Any], settings: ProviderSettings, spec: KeySpec, source: KeySource, vault: str
) -> WrapOffer:
    """The wrap method, negotiated as plan does: the source must be able to wrap this key with
    the one method Azure accepts."""
    capabilities = source.capabilities()
    offers = plugin.wrap_offers(settings, spec.algorithm)
    result = negotiate(spec.algorithm, offers, capabilities, source=source.address, target=vault)
    if result.offer is None:
        raise DiagnosticsError.single(
            f"{spec.address} cannot be wrapped for {vault}", result.problem, range=spec.range, address=spec.address
        )
    return result.offer


def describe(request: ExportRequest, result: ExportResult, state: State) -> str:
    """What was written and what to run next; never the material."""
    from providers.azure.mapping import az_cli_vault_arguments, azure_key_type, key_operations

    key_type = azure_key_type(result.algorithm)
    assert key_type is not None
    host = urlsplit(result.vault_url).hostname or ""
    command = [
        "az", "keyvault", "key", "import",
        *az_cli_vault_arguments(result.vault_url),
        "--name", result.key_name,
        "--byok-file", str(request.output),
        "--kty", key_type.kty,
    ]  # fmt: skip
    if key_type.crv:
        command += ["--curve", key_type.crv]
    command += ["--ops", *key_operations(result.usage)]
    command += ["--tags", f"keyplan-address={request.address}", f"keyplan-managed-by={state.managed_by}"]
    stand_in = ""
    if urlsplit(result.kek_kid).hostname != host:
        stand_in = (
            f"(keyplan reaches {result.vault_url} through the endpoint {urlsplit(result.kek_kid).netloc}, so the file "
            "names the key-exchange key as that endpoint knows it; import it there.)\n"
        )
    return (
        f"Wrote {request.output}: material version {result.material.version} of {request.address} "
        f"({result.algorithm.name}, fingerprint {result.material.fingerprint}),\n"
        f"wrapped with CKM_RSA_AES_KEY_WRAP (RSA-OAEP SHA-1 + AES key wrap) for the key-exchange key\n"
        f"  {result.kek_kid}\n{stand_in}\n"
        "Only that key-exchange key, inside the vault, can unwrap it. Import it into the vault yourself, e.g.:\n"
        f"  {shlex.join(command)}\n"
        "or upload it in the Azure portal (Keys > Generate/Import > Import, with this file as the key file).\n"
        "The tags let keyplan recognise the key if you later add this vault to the key's targets.\n"
    )
