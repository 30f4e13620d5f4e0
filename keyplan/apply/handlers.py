"""One handler per action kind, found in a table by the action's `kind`; what a handler works
with (`ApplyContext`) is in `keyplan.apply.context`.

A handler reads what it needs from the plan and the state, makes its one plugin call through
`ApplyContext.calls` (the single door for provider and key-source calls), and records what it
did in state through the committer before it returns. Handlers of actions that hand something
to a later action (import parameters, wrapped material) leave it in `ApplyContext.outputs`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from keyplan.apply.context import ActionFailed, ApplyContext
from keyplan.apply.proving import found_version, verify_import
from keyplan.plan.model import (
    Action,
    ActionKind,
    AdoptKey,
    BaseAction,
    CancelDeletion,
    CreateKey,
    EnsurePrerequisite,
    ForgetKey,
    GenerateMaterial,
    GetImportParameters,
    ImportMaterial,
    PromoteVersion,
    RecordProtection,
    ScheduleDeletion,
    UpdateKey,
    VerifyMaterial,
    WrapMaterial,
)
from keyplan.provider import (
    CancelDeletionRequest,
    CreateKeyRequest,
    EnsurePrerequisiteRequest,
    ErrorKind,
    GenerateRequest,
    ImportParameters,
    ImportParametersRequest,
    ImportPurpose,
    KeySource,
    KeyState,
    PluginAnswerError,
    PromoteVersionRequest,
    Provider,
    ProviderError,
    ScheduleDeletionRequest,
    UpdateKeyRequest,
    WrapOffer,
    WrappedMaterial,
)
from keyplan.state.model import ImportedVersion, MaterialVersion, State, TargetRecord
from keyplan.transfer import checked_wrap, import_request, wrap_request

log = logging.getLogger("keyplan")
A = TypeVar("A", bound=BaseAction)
Handler = Callable[[ApplyContext, A], None]
HANDLERS: dict[ActionKind, Handler[Any]] = {}


def handles(model: type[A]) -> Callable[[Handler[A]], Handler[A]]:
    """Register the decorated function as the handler of `model`'s kind."""
    kind = model.model_fields["kind"].default
    if not isinstance(kind, ActionKind):
        raise TypeError(f"{model.__name__} has no fixed kind")

    def register(handler: Handler[A]) -> Handler[A]:
        HANDLERS[kind] = handler
        return handler

    return register


def run_action(context: ApplyContext, action: Action) -> None:
    HANDLERS[action.kind](context, action)


# -- material -----------------------------------------------------------------------------------


@handles(GenerateMaterial)
def generate_material(context: ApplyContext, action: GenerateMaterial) -> None:
    planned = context.planned(action.address)
    version = action.args.version
    generated = context.calls.source(
        action,
        action.source,
        KeySource.generate,
        GenerateRequest(address=action.address, version=version, algorithm=planned.spec.algorithm),
    )

    def record(state: State) -> None:
        key = context.key_record_in(state, action.address)
        key.prevent_destroy = planned.prevent_destroy
        key.materials = [m for m in key.materials if m.version != version]
        key.materials.append(
            MaterialVersion(
                version=version,
                handle=generated.handle,
                fingerprint=generated.fingerprint,
                created_at=generated.created_at,
            )
        )

    context.committer.commit(record, key=action.address)
    context.hooks.mutated(action, "generated", None)


def parameters_request(context: ApplyContext, address: str, target: str, offer: WrapOffer) -> ImportParametersRequest:
    return ImportParametersRequest(
        remote_id=context.target_record(address, target).remote_id,
        key=context.spec(address),
        offer=offer,
        prerequisites=context.prerequisites(target),
    )


def fetch_parameters(context: ApplyContext, action: Action, address: str, target: str, offer: WrapOffer) -> ImportParameters:
    return context.calls.provider(
        action, target, Provider.get_import_parameters, parameters_request(context, address, target, offer)
    )


def wrap_for(
    context: ApplyContext, action: Action, address: str, source: str, version: int, parameters: ImportParameters
) -> WrappedMaterial:
    material = context.record(address).material(version)
    if material is None:
        raise ActionFailed(
            f"material version {version} is not in state",
            f"{address} has no material version {version}, so there is nothing to wrap. Run `keyplan plan` again.",
        )
    wrapped = context.calls.source(
        action, source, KeySource.wrap, wrap_request(material.handle, context.spec(address).algorithm, parameters)
    )
    return checked_wrap(source, wrapped, parameters)


@handles(GetImportParameters)
def get_import_parameters(context: ApplyContext, action: GetImportParameters) -> None:
    context.set_output(action.id, fetch_parameters(context, action, action.address, action.target, action.args.offer))


@handles(WrapMaterial)
def wrap_material(context: ApplyContext, action: WrapMaterial) -> None:
    parameters: ImportParameters = context.output(action.args.parameters_action)
    context.set_output(
        action.id, wrap_for(context, action, action.address, action.source, action.args.version, parameters)
    )


@handles(ImportMaterial)
def import_material(context: ApplyContext, action: ImportMaterial) -> None:
    address, target, args = action.address, action.target, action.args
    spec = context.spec(address)
    parameters: ImportParameters = context.output(args.parameters_action)
    wrapped: WrappedMaterial = context.output(args.wrap_action)
    managed_by = context.managed_by()
    found = found_version(context, action) if args.unrecorded_versions else None
    if found is not None:
        record_import(context, action, found.version_id, None)  # its expiry is the cloud's, unknown here
        context.hooks.mutated(
            action,
            f"material v{args.version} is already version {found.version_id} (imported by an interrupted apply): "
            f"recorded, not imported again ({found.how})",
            context.target_record(address, target).remote_id,
        )
        return
    for refreshed in (False, True):
        valid_to = context.now() + spec.expiry if spec.expiry is not None else None
        try:
            response = context.calls.provider(
                action,
                target,
                Provider.import_material,
                import_request(
                    parameters_request(context, address, target, args.offer),
                    parameters,
                    wrapped,
                    address=address,
                    managed_by=managed_by,
                    purpose=args.purpose,
                    reimport_version_id=args.reimport_version_id,
                    valid_to=valid_to,
                ),
            )
            break
        except ProviderError as exc:
            if exc.kind is not ErrorKind.PARAMETERS_EXPIRED or refreshed:
                raise
            # The import token or job expired since it was fetched: fetch fresh ones and wrap again.
            parameters = fetch_parameters(context, action, address, target, args.offer)
            wrapped = wrap_for(context, action, address, context.planned(address).source, args.version, parameters)
            context.hooks.retrying(action, 1, 0.0, "import parameters expired; fetched fresh ones")

    record_import(context, action, response.version_id, response.expires_at)
    context.hooks.mutated(action, f"imported material v{args.version} ({args.purpose.value})", response.remote_id)


def record_import(context: ApplyContext, action: ImportMaterial, version_id: str, expires_at: datetime | None) -> None:
    address, target, args = action.address, action.target, action.args
    spec = context.spec(address)

    def imported(state: State) -> None:
        record = state.keys[address].targets[target]
        record.exists_remotely = True
        record.imports.append(
            ImportedVersion(
                material_version=args.version,
                remote_version_id=version_id,
                imported_at=context.now(),
                expires_at=expires_at,
            )
        )
        if args.purpose is not ImportPurpose.NEW_VERSION:
            record.current_material_version = args.version
        if args.purpose is ImportPurpose.INITIAL:
            record.labels = dict(spec.labels)
            record.description = spec.description
            record.enabled = True

    context.committer.commit(imported, key=address)


@handles(VerifyMaterial)
def verify_material(context: ApplyContext, action: VerifyMaterial) -> None:
    verify_import(context, action)


# -- remote keys --------------------------------------------------------------------------------


@handles(EnsurePrerequisite)
def ensure_prerequisite(context: ApplyContext, action: EnsurePrerequisite) -> None:
    spec, target = action.args.spec, action.target
    known = context.prerequisites(target).get(spec.id)
    record = context.calls.provider(
        action, target, Provider.ensure_prerequisite, EnsurePrerequisiteRequest(spec=spec, known=known)
    )
    if record.id != spec.id:
        raise PluginAnswerError(target, f"ensure_prerequisite answered prerequisite {record.id!r} for {spec.id!r}")
    context.committer.commit(lambda state: state.record_prerequisite(target, record), prerequisites_of=target)
    changed = known is None or known.remote_id != record.remote_id
    context.hooks.mutated(action, "ensured" if changed else "reused", record.remote_id)


@handles(AdoptKey)
def adopt_key(context: ApplyContext, action: AdoptKey) -> None:
    address, target = action.address, action.target
    live, version = action.args.live, action.args.material_version

    def adopt(state: State) -> None:
        # The key was created for the material state held at plan time; if the cloud shows it
        # holds material, that import finished before the interruption.
        key = context.key_record_in(state, address)
        imports: list[ImportedVersion] = []
        if version is not None and live.state is not KeyState.PENDING_IMPORT and live.current_version:
            imports.append(
                ImportedVersion(
                    material_version=version,
                    remote_version_id=live.current_version,
                    imported_at=context.now(),
                    expires_at=live.expires_at,
                )
            )
        key.targets[target] = TargetRecord(
            remote_id=live.remote_id,
            imports=imports,
            current_material_version=version if imports else None,
            labels=dict(live.labels),
            aliases=list(live.aliases),
            description=live.description,
            enabled=live.enabled,
        )

    context.committer.commit(adopt, key=address)


@handles(CancelDeletion)
def cancel_deletion(context: ApplyContext, action: CancelDeletion) -> None:
    address, target = action.address, action.target
    remote_id = context.target_record(address, target).remote_id
    response = context.calls.provider(action, target, Provider.cancel_deletion, CancelDeletionRequest(remote_id=remote_id))

    def restored(state: State) -> None:
        record = state.keys[address].targets[target]
        record.deletion_date = None
        record.enabled = response.enabled

    context.committer.commit(restored, key=address)
    context.hooks.mutated(action, "deletion cancelled", remote_id)


@handles(CreateKey)
def create_key(context: ApplyContext, action: CreateKey) -> None:
    address, target = action.address, action.target
    spec = context.spec(address)
    response = context.calls.provider(
        action,
        target,
        Provider.create_key,
        CreateKeyRequest(
            address=address, managed_by=context.managed_by(), key=spec, prerequisites=context.prerequisites(target)
        ),
    )

    def created(state: State) -> None:
        key = context.key_record_in(state, address)
        key.targets[target] = TargetRecord(
            remote_id=response.remote_id,
            exists_remotely=response.exists_remotely,
            labels=dict(spec.labels),
            description=spec.description,
            enabled=response.state is KeyState.ENABLED,
        )

    context.committer.commit(created, key=address)
    if response.exists_remotely:
        context.hooks.mutated(action, "created", response.remote_id)


@handles(PromoteVersion)
def promote_version(context: ApplyContext, action: PromoteVersion) -> None:
    address, target, version = action.address, action.target, action.args.version
    target_record, imported = context.imported(address, target, version, "promoting it")
    context.calls.provider(
        action,
        target,
        Provider.promote_version,
        PromoteVersionRequest(remote_id=target_record.remote_id, version_id=imported.remote_version_id),
    )

    def promoted(state: State) -> None:
        state.keys[address].targets[target].current_material_version = version

    context.committer.commit(promoted, key=address)
    context.hooks.mutated(action, f"made material v{version} current", target_record.remote_id)


@handles(UpdateKey)
def update_key(context: ApplyContext, action: UpdateKey) -> None:
    address, target = action.address, action.target
    spec = context.spec(address)
    target_record = context.target_record(address, target)
    context.calls.provider(
        action,
        target,
        Provider.update_key,
        UpdateKeyRequest(
            remote_id=target_record.remote_id, address=address, managed_by=context.managed_by(), key=spec
        ),
    )

    def updated(state: State) -> None:
        record = state.keys[address].targets[target]
        record.labels = dict(spec.labels)
        record.aliases = sorted(spec.aliases)
        record.description = spec.description
        record.enabled = spec.enabled

    context.committer.commit(updated, key=address)
    context.hooks.mutated(action, "updated", target_record.remote_id)


@handles(ScheduleDeletion)
def schedule_deletion(context: ApplyContext, action: ScheduleDeletion) -> None:
    address, target, remote_id = action.address, action.target, action.args.remote_id
    response = context.calls.provider(
        action, target, Provider.schedule_deletion, ScheduleDeletionRequest(remote_id=remote_id)
    )

    def scheduled(state: State) -> None:
        key = state.keys.get(address)
        if key and target in key.targets:
            key.targets[target].deletion_date = response.deletion_date or context.now()

    context.committer.commit(scheduled, key=address)
    context.hooks.mutated(action, "deletion scheduled", remote_id)


@handles(ForgetKey)
def forget_key(context: ApplyContext, action: ForgetKey) -> None:
    address, target = action.address, action.target

    def forget(state: State) -> None:
        if action.args.target_only:
            key = state.keys.get(address)
            if key is not None and target is not None:
                key.targets.pop(target, None)
        else:
            state.keys.pop(address, None)

    context.committer.commit(forget, key=address)


@handles(RecordProtection)
def record_protection(context: ApplyContext, action: RecordProtection) -> None:
    address, protect = action.address, action.args.prevent_destroy

    def record(state: State) -> None:
        key = state.keys.get(address)
        if key is not None:
            key.prevent_destroy = protect

    context.committer.commit(record, key=address)
