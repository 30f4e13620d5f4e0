"""Planning, end to end: desired keys from the configuration, live inventory from every
target (bulk, concurrently), the diff, and the action graph, assembled into a `Plan`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from keyplan import __version__
from keyplan.config import key_spec
from keyplan.config.model import Config
from keyplan.config.suggestions import did_you_mean
from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.heap import trusted
from keyplan.plan.diff import diff
from keyplan.plan.estimate import quota_estimate
from keyplan.plan.graph import build_actions
from keyplan.plan.model import Plan, PlannedKey, PriorState
from keyplan.plan.work import DesiredKey, KeyWork, PlanOptions, TargetInfo
from keyplan.provider import (
    Holding,
    HoldingRequest,
    Inventory,
    InventoryRequest,
    KeySource,
    PluginAnswerError,
    Provider,
    ProviderError,
    SourceCapabilities,
    SourceError,
    checked_answer,
)
from keyplan.runtime import Session
from keyplan.state.model import State

log = logging.getLogger("keyplan.plan")


def desired_keys(config: Config) -> dict[str, DesiredKey]:
    return {
        address: DesiredKey(
            spec=key_spec(key),
            source=key.source,
            targets=tuple(key.targets),
            prevent_destroy=key.prevent_destroy,
            range=key.range,
        )
        for address, key in config.keys.items()
    }


def check_addresses_given(
    desired: dict[str, DesiredKey], state: State, options: PlanOptions, diagnostics: Diagnostics
) -> None:
    """Every `-replace` and `-target` names a key of the configuration or the state (an instance,
    or a whole key block): a typo must not make a plan that silently leaves out the rotation or
    the keys asked for."""
    known = set(desired) | set(state.keys)
    blocks = {address.split("[", 1)[0] for address in known}
    for flag, addresses in (("-replace", options.replace), ("-target", options.targets)):
        for address in addresses:
            if address in known or address in blocks:
                continue
            diagnostics.error(
                f"{flag} names no key: {address}",
                "No key of the configuration or the state has this address."
                + did_you_mean(address, known | blocks, render="`{}`")
                + " `keyplan state list` lists the keys in state.",
            )


def involved_targets(desired: dict[str, DesiredKey], state: State, options: PlanOptions) -> list[str]:
    targets: set[str] = set()
    for address, key in desired.items():
        if options.selects(address):
            targets.update(key.targets)
    for address, record in state.keys.items():
        if options.selects(address):
            targets.update(record.targets)
    return sorted(targets)


def refresh(
    session: Session,
    desired: dict[str, DesiredKey],
    state: State,
    targets: list[str],
    options: PlanOptions,
    parallelism: int,
    diagnostics: Diagnostics,
) -> dict[str, Inventory]:
    """One bulk inventory per target, the targets queried concurrently."""

    def request_for(target: str) -> InventoryRequest:
        here = [(address, record, record.targets[target]) for address, record in state.keys.items() if target in record.targets]
        # A key whose import is still to do (or was done by an apply that crashed before recording
        # it) is looked up too, with its versions: the diff checks them before importing again.
        pending = [
            tr.remote_id
            for _, record, tr in here
            if tr.remote_id
            and (
                not tr.exists_remotely
                or not tr.imports
                or (record.latest_material is not None and record.latest_material.version > (tr.current_material_version or 0))
            )
        ]
        looked_up = set(pending)
        known = {tr.remote_id: address for address, _, tr in here if tr.exists_remotely or tr.remote_id in looked_up}
        addresses = sorted(
            {a for a, d in desired.items() if target in d.targets}
            | {a for a, r in state.keys.items() if target in r.targets}
        )
        unknown_here = any(
            target in d.targets and target not in (state.keys[a].targets if a in state.keys else {})
            for a, d in desired.items()
            if options.selects(a)
        )
        return InventoryRequest(
            managed_by=state.managed_by,
            known=known,
            addresses=tuple(addresses),
            scan=unknown_here or options.refresh_only,
            with_versions=tuple(pending),
        )

    def one(target: str) -> tuple[str, Inventory | None, Exception | None]:
        request = request_for(target)
        started = time.monotonic()
        try:
            inventory = checked_answer(target, Provider.inventory, session.provider(target).inventory(request))
        except PluginAnswerError as exc:
            return target, None, DiagnosticsError.single(exc.summary, exc.detail, address=target)
        except (ProviderError, DiagnosticsError) as exc:
            log.debug("inventory of %s failed after %.2fs: %s", target, time.monotonic() - started, exc)
            return target, None, exc
        log.debug(
            "inventory of %s: %d known, scan=%s -> %d keys, %d missing in %.2fs",
            target, len(request.known), request.scan, len(inventory.keys), len(inventory.missing),
            time.monotonic() - started,
        )
        return target, inventory, None

    live: dict[str, Inventory] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(targets) or 1))) as pool:
        for target, inventory, error in pool.map(one, targets):
            if isinstance(error, DiagnosticsError):
                diagnostics.extend(error.diagnostics)
            elif isinstance(error, ProviderError):
                block = session.config.providers.get(target)
                diagnostics.error(
                    f"Cannot read the inventory of {target}: {error.summary}",
                    error.detail,
                    range=block.range if block else None,
                    address=target,
                )
            elif inventory is not None:
                live[target] = inventory
    return live


def source_capabilities(
    session: Session, desired: dict[str, DesiredKey], options: PlanOptions, diagnostics: Diagnostics
) -> dict[str, SourceCapabilities]:
    capabilities: dict[str, SourceCapabilities] = {}
    for source in sorted({d.source for a, d in desired.items() if options.selects(a)}):
        if source not in session.config.sources:
            continue
        try:
            capabilities[source] = checked_answer(source, KeySource.capabilities, session.source(source).capabilities())
        except PluginAnswerError as exc:
            diagnostics.error(exc.summary, exc.detail, address=source)
        except DiagnosticsError as exc:
            diagnostics.extend(exc.diagnostics)
        except SourceError as exc:
            diagnostics.error(f"Source {source}: {exc.summary}", exc.detail, address=source)
    return capabilities


def check_sources_hold(
    session: Session, state: State, sources: set[str], diagnostics: Diagnostics, replacing: tuple[str, ...] = ()
) -> None:
    """Each source in `sources` must still hold every material version the state records in it:
    a keystore file moved away or an HSM object deleted is an error naming the keys it affects,
    before the source is used (and would otherwise start a fresh, empty store). Opening the
    source's protection here also reports a wrong passphrase or PIN at plan time. Keys being
    given new material (`replacing`, as -replace names them) are the way out of a loss: excused."""
    excused = PlanOptions(targets=replacing)
    for source in sorted(sources):
        if source not in session.config.sources:
            continue
        recorded = {
            material.handle: (address, material.version)
            for address, record in state.keys.items()
            if record.source == source and not (replacing and excused.selects(address))
            for material in record.materials
        }
        try:
            holding = checked_answer(
                source, KeySource.holding, session.source(source).holding(HoldingRequest(handles=tuple(recorded)))
            )
        except PluginAnswerError as exc:
            diagnostics.error(exc.summary, exc.detail, address=source)
            continue
        except SourceError as exc:
            diagnostics.error(f"Source {source}: {exc.summary}", exc.detail, address=source)
            continue
        except DiagnosticsError as exc:
            diagnostics.extend(exc.diagnostics)
            continue
        lost = sorted((*recorded[h], h) for h in holding.missing if h in recorded)
        if lost:
            diagnostics.error("Key material is missing from its source", _loss_detail(source, holding, lost), address=source)


def _loss_detail(source: str, holding: Holding, lost: list[tuple[str, int, str]]) -> str:
    listed = "\n".join(f"  {address} material version {version} (handle {handle})" for address, version, handle in lost[:20])
    more = f"\n  ... and {len(lost) - 20} more" if len(lost) > 20 else ""
    reason = f"{holding.reason} " if holding.reason else ""
    return (
        f"{reason}State records material in {source} that the source no longer holds:\n{listed}{more}\n"
        "Nothing was changed, and keyplan does not start an empty store in its place. Restore the source from its "
        "backup (a keystore file with its key file, an HSM token or its objects) and run the command again. If the "
        f"material is lost for good, rotate each affected key so new material is generated, e.g. "
        f"`-replace='{lost[0][0]}'`."
    )


def check_material_present(session: Session, state: State, work: list[KeyWork], diagnostics: Diagnostics) -> None:
    """Material the plan will wrap again (re-imports, new targets, resumed rotations) must still
    be in its source: say so at plan time rather than fail half-way through apply."""
    for item in work:
        record = state.keys.get(item.address)
        if record is None:
            continue
        versions = {tw.import_version for tw in item.targets if tw.import_version is not None}
        versions.discard(item.generate_version)
        for version in sorted(v for v in versions if v is not None):
            material = record.material(version)
            if material is None:
                continue
            try:
                info = checked_answer(
                    record.source, KeySource.describe, session.source(record.source).describe(material.handle)
                )
            except PluginAnswerError as exc:
                diagnostics.error(exc.summary, exc.detail, address=item.address)
                continue
            except SourceError as exc:
                diagnostics.error(f"Source {record.source}: {exc.summary}", exc.detail, address=item.address)
                continue
            except DiagnosticsError as exc:
                diagnostics.extend(exc.diagnostics)
                continue
            if not info.present:
                diagnostics.error(
                    "Key material is missing from its source",
                    f"{item.address} material version {version} ({material.fingerprint or 'fingerprint not yet recomputed'}) is no longer in "
                    f"{record.source} (handle {material.handle}), so it cannot be imported again. Restore the "
                    "source (keystore backup, HSM backup) or, if the material is lost for good, rotate the key "
                    f"with `-replace='{item.address}'` so new material is generated.",
                    address=item.address,
                )


def make_plan(
    session: Session,
    state: State,
    *,
    prior_exists: bool,
    options: PlanOptions,
    parallelism: int = 10,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[Plan | None, Diagnostics]:
    diagnostics = Diagnostics()
    config = session.config
    desired = desired_keys(config)
    check_addresses_given(desired, state, options, diagnostics)
    targets = involved_targets(desired, state, options)
    infos: dict[str, TargetInfo] = {}
    for target in targets:
        if target not in config.providers:
            diagnostics.error(
                f"Provider {target} is not configured",
                f"The state has keys at {target}, but no `provider` block declares it. Keep the provider block "
                "until its keys are deleted, or remove the keys from state with `keyplan state rm`.",
                address=target,
            )
            continue
        plugin, settings = session.provider_plugin(target)
        infos[target] = TargetInfo(address=target, plugin=plugin, settings=settings)
    capabilities = source_capabilities(session, desired, options, diagnostics)
    if not options.refresh_only:
        check_sources_hold(session, state, set(capabilities), diagnostics, options.replace)
    live: dict[str, Inventory] | None = None
    if options.refresh or options.refresh_only:
        live = refresh(session, desired, state, list(infos), options, parallelism, diagnostics)
    if diagnostics.has_errors():
        return None, diagnostics
    result = diff(desired, state, live, infos, capabilities, options, now(), new_state=not prior_exists)
    diagnostics.extend(result.diagnostics)
    if diagnostics.has_errors():
        return None, diagnostics
    check_material_present(session, state, result.work, diagnostics)
    if diagnostics.has_errors():
        return None, diagnostics
    actions = build_actions(result.work, verify=options.verify)
    plan = Plan(
        keyplan_version=__version__,
        created_at=now(),
        mode="refresh-only" if options.refresh_only else "normal",
        prior=PriorState(lineage=state.lineage, serial=state.serial, exists=prior_exists),
        managed_by=state.managed_by,
        config_digest=config.digest,
        config_dir=config.directory,
        options={
            "targets": list(options.targets),
            "replace": list(options.replace),
            "refresh": options.refresh,
            "expiry_horizon_seconds": options.expiry_horizon.total_seconds() if options.expiry_horizon else None,
        },
        keys={
            address: trusted(PlannedKey, spec=d.spec, source=d.source, prevent_destroy=d.prevent_destroy)
            for address, d in desired.items()
            if options.selects(address)
        },
        changes=result.changes,
        drift=result.drift,
        actions=actions,
        warnings=list(diagnostics.warnings),
        live=_live_values(live) if options.refresh_only and live else {},
        estimate=quota_estimate(actions, {target: info.settings for target, info in infos.items()}, result.changes),
    )
    return plan, diagnostics


def _live_values(live: dict[str, Inventory]) -> dict[str, dict[str, object]]:
    return {
        target: {key.remote_id: key.model_dump(mode="json") for key in inventory.keys}
        for target, inventory in live.items()
    }
