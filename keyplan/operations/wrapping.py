"""The wrapping keys a plan's imports will use, fetched from their targets before apply: for key
sources that wrap only under keys their security officer marked trusted
(`SourceCapabilities.trusted_wrapping_only`), whose plugin then trusts them."""

from __future__ import annotations

from dataclasses import dataclass

from keyplan.config.model import Config
from keyplan.diagnostics import DiagnosticsError
from keyplan.operations.plan import make_plan
from keyplan.operations.workspace import LockOptions, locked, read_state, state_backend
from keyplan.plan.model import GetImportParameters, Plan
from keyplan.plan.work import PlanOptions
from keyplan.provider import ImportParameters, ImportParametersRequest, ProviderError, WrapOffer
from keyplan.state.model import State


@dataclass(frozen=True)
class PlannedWrappingKey:
    address: str
    target: str
    source: str
    offer: WrapOffer
    parameters: ImportParameters


def selected_keys(config: Config, address: str, targets: list[str]) -> list[str]:
    """The configuration's keys that `address` names (a key block names all its instances),
    refusing targets none of them imports into."""
    options = PlanOptions(targets=(address,))
    addresses = sorted(a for a in config.keys if options.selects(a))
    if not addresses:
        known = ", ".join(sorted(config.keys)[:5])
        raise DiagnosticsError.single(
            f"No key {address} in the configuration",
            'Name a key as the configuration declares it, e.g. key.NAME or key.NAME["KEY"].'
            + (f" Some are: {known}." if known else ""),
        )
    for wanted in targets:
        if not any(wanted in config.keys[a].targets for a in addresses):
            raise DiagnosticsError.single(
                f"{address} is not imported into {wanted}",
                f"Its targets are: {', '.join(sorted({t for a in addresses for t in config.keys[a].targets}))}. "
                "Pass one of them to --target, or leave --target out for all of them.",
            )
    return addresses


def planned_wrapping_keys(
    config: Config, address: str, targets: list[str], *, lock: LockOptions, operation: str
) -> list[PlannedWrappingKey]:
    """Plan `address` as `keyplan plan` would (so the wrap method and wrapping key size are those
    apply will ask for) and fetch the wrapping key of every target an import is planned for.
    `operation` is the command asking (`keyplan OPERATION ADDR --target T`), named in messages."""
    from keyplan.runtime import Session

    addresses = selected_keys(config, address, targets)
    backend = state_backend(config)
    with locked(backend, operation, lock):
        state, exists = read_state(backend)
        plan = make_plan(config, state, exists, PlanOptions(targets=(address,)), 10)
        imports = _planned_imports(plan, addresses, targets)
        remote_ids = {(a, t): _remote_id(state, a, t, operation) for a, t, _ in imports}
        found: list[PlannedWrappingKey] = []
        with Session(config) as session:
            for item_address, target, offer in imports:
                try:
                    parameters = session.provider(target).get_import_parameters(
                        ImportParametersRequest(
                            remote_id=remote_ids[(item_address, target)],
                            key=plan.keys[item_address].spec,
                            offer=offer,
                            prerequisites=dict(state.prerequisites.get(target, {})),
                        )
                    )
                except ProviderError as exc:
                    raise DiagnosticsError.single(
                        f"Cannot fetch the wrapping key of {target}: {exc.summary}", exc.detail, address=item_address
                    ) from None
                found.append(
                    PlannedWrappingKey(item_address, target, config.keys[item_address].source, offer, parameters)
                )
    return found


def _planned_imports(plan: Plan, addresses: list[str], targets: list[str]) -> list[tuple[str, str, WrapOffer]]:
    found: dict[tuple[str, str], WrapOffer] = {}
    for action in plan.actions:
        if not isinstance(action, GetImportParameters) or action.address not in addresses:
            continue
        if targets and action.target not in targets:
            continue
        found[(action.address, action.target)] = action.args.offer
    return [(address, target, found[(address, target)]) for address, target in sorted(found)]


def _remote_id(state: State, address: str, target: str, operation: str) -> str:
    record = state.keys.get(address)
    target_record = record.targets.get(target) if record is not None else None
    if target_record is None:
        raise DiagnosticsError.single(
            f"{address} does not exist at {target} yet",
            f"{target} hands out its wrapping key for an existing key, so there is nothing to trust yet. "
            f"Run `keyplan apply`: it creates the key and stops before the wrap step; then run "
            f"`keyplan {operation} '{address}' --target {target}` and `keyplan apply` again.",
            address=address,
        )
    return target_record.remote_id
