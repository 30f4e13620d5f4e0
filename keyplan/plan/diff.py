"""The diff: desired keys x state x live inventory -> planned changes, drift, and the work the
action graph must do.

This module is pure: no I/O, no clock of its own (`now` is passed in), no plugin opened. It
decides, per key and target, one of create, adopt, import, reimport, rotate, update, restore,
delete or no-op, and separately what changed outside keyplan (drift: live compared with what
state says keyplan last set). Changes compare the desired configuration with the live key.
The records it fills in (`KeyWork`, `TargetWork`) and its inputs are in `keyplan.plan.work`.

Why this file is long: it is one walk, `_Differ`, over desired keys, state and the live
inventory, whose methods share that walk's indexes and diagnostics; its branches follow the
cases a key can be in (new, adopted, lost, rotated, deleted, drifted), each short.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from keyplan.diagnostics import Diagnostics
from keyplan.heap import trusted
from keyplan.plan.model import (
    ChangeAction,
    Drift,
    DriftKind,
    Metadata,
    PlannedChange,
    WrapChoice,
)
from keyplan.plan.negotiate import Negotiation, negotiate
from keyplan.plan.work import (
    DesiredKey,
    DiffResult,
    KeyWork,
    PlanOptions,
    TargetInfo,
    TargetWork,
    as_created,
    desired_metadata,
    live_metadata,
    metadata_differences,
    recorded_metadata,
)
from keyplan.provider import (
    ImportPurpose,
    Inventory,
    KeySpec,
    KeyState,
    RemoteKey,
    SourceCapabilities,
    VersionState,
)
from keyplan.state.model import KeyRecord, State, TargetRecord


class _Differ:
    def __init__(
        self,
        desired: dict[str, DesiredKey],
        state: State,
        live: dict[str, Inventory] | None,
        targets: dict[str, TargetInfo],
        capabilities: dict[str, SourceCapabilities],
        options: PlanOptions,
        now: datetime,
        new_state: bool,
    ) -> None:
        self.desired = desired
        self.new_state = new_state  # no state was ever written here (or it was lost)
        self.state = state
        self.live = live
        self.targets = targets
        self.capabilities = capabilities
        self.options = options
        self.now = now
        self.diagnostics = Diagnostics()
        self._negotiated: dict[tuple[str, str, str], tuple[Negotiation, WrapChoice | None]] = {}
        self.changes: list[PlannedChange] = []
        self.drift: list[Drift] = []
        self.work: list[KeyWork] = []
        self._live_by_id: dict[str, dict[str, RemoteKey]] = {}
        self._missing: dict[str, set[str]] = {}
        self._by_address: dict[str, dict[str, list[RemoteKey]]] = {}
        self._other_lineage: dict[str, list[RemoteKey]] = {}  # target -> live keys another state manages
        for target, inventory in (live or {}).items():
            self._live_by_id[target] = {k.remote_id: k for k in inventory.keys}
            self._missing[target] = set(inventory.missing)
            by_address: dict[str, list[RemoteKey]] = {}
            for key in inventory.keys:
                if key.address:
                    by_address.setdefault(key.address, []).append(key)
            self._by_address[target] = by_address

    # -- entry -------------------------------------------------------------------------------

    def run(self) -> DiffResult:
        for address in sorted(self.desired):
            if self.options.selects(address):
                self._desired_key(address, self.desired[address])
        for address in sorted(self.state.keys):
            if address not in self.desired and self.options.selects(address):
                self._removed_key(self.state.keys[address])
        if self.live is not None:
            self._orphans()
        self._refuse_other_lineages()
        return DiffResult(self.changes, self.drift, self.work, self.diagnostics)

    # -- keys in configuration ---------------------------------------------------------------

    def _desired_key(self, address: str, desired: DesiredKey) -> None:
        record = self.state.keys.get(address)
        latest = record.latest_material if record else None
        work = KeyWork(address=address, source=desired.source)
        if record is not None and record.algorithm != desired.spec.algorithm.name:
            self.diagnostics.error(
                "Algorithm of an existing key cannot change",
                f"{address} holds {record.algorithm} material; the configuration now says "
                f"{desired.spec.algorithm.name}. Imported keys cannot change type. Declare a new key under "
                "another name and remove this one when nothing uses it any more.",
                range=desired.range,
                address=address,
            )
            return
        if latest is None:
            work.generate_version = 1
            material_version = 1
        else:
            material_version = latest.version
            rotation_due = desired.spec.rotation is not None and latest.created_at + desired.spec.rotation <= self.now
            if rotation_due or address in self.options.replace or _base(address) in self.options.replace:
                if not self.options.refresh_only and self._can_rotate(address, desired):
                    work.generate_version = latest.version + 1
                    material_version = latest.version + 1
        for target in desired.targets:
            info = self.targets.get(target)
            if info is None:
                continue  # validate reported it
            tw = self._desired_target(address, desired, record, target, info, material_version, work)
            if tw is not None:
                work.targets.append(tw)
        for target, target_record in sorted((record.targets if record else {}).items()):
            if target not in desired.targets:
                protected = desired.prevent_destroy or (record is not None and record.prevent_destroy)
                self._delete_target(address, record, target, target_record, protected, work)  # type: ignore[arg-type]
        if record is not None and record.prevent_destroy != desired.prevent_destroy and not self.options.refresh_only:
            self._record_protection(address, desired, work)
        if work.targets or work.generate_version or work.forget or work.protect is not None:
            self.work.append(work)

    def _record_protection(self, address: str, desired: DesiredKey, work: KeyWork) -> None:
        """State keeps what `lifecycle.prevent_destroy` says (it guards deletion even after the
        block is removed), so a change of it is a change of its own, reviewed like any other."""
        work.protect = desired.prevent_destroy
        change = PlannedChange(
            address=address,
            actions=[ChangeAction.UPDATE],
            reason=(
                "lifecycle.prevent_destroy = true is recorded in state: the key cannot be deleted until an apply "
                "records false"
                if desired.prevent_destroy
                else "lifecycle.prevent_destroy = false is recorded in state: the key may be deleted by a later apply"
            ),
        )
        if desired.prevent_destroy:
            for target in desired.targets:
                info = self.targets.get(target)
                note = info.plugin.protection_note(info.settings) if info is not None else None
                if note:
                    change.notes.append(f"{target}: {note}")
        self.changes.append(change)

    def _can_rotate(self, address: str, desired: DesiredKey) -> bool:
        """Whether every target of the key can take new material; a refusal for each one that cannot.
        A rotation is all or nothing: no material version is generated unless every target takes it."""
        able = True
        for target in desired.targets:
            info = self.targets.get(target)
            if info is None:
                continue
            support = info.plugin.lifecycle_support(info.settings, desired.spec)
            if not support.rotation:
                able = False
                self.diagnostics.error(
                    f"{target} cannot rotate {address}",
                    f"A rotation of {address} ({'-replace' if self._replaced(address) else 'rotation period'}) needs "
                    f"new material at {target}, which cannot take it. {support.rotation_instead}",
                    range=desired.range,
                    address=address,
                )
        return able

    def _replaced(self, address: str) -> bool:
        return address in self.options.replace or _base(address) in self.options.replace

    def _desired_target(
        self,
        address: str,
        desired: DesiredKey,
        record: KeyRecord | None,
        target: str,
        info: TargetInfo,
        material_version: int,
        work: KeyWork,
    ) -> TargetWork | None:
        spec = desired.spec
        target_record = record.targets.get(target) if record else None
        fields = info.plugin.metadata_fields(info.settings)
        after = desired_metadata(spec)
        change = trusted(PlannedChange, address=address, target=target, actions=[], reason="", after=after)
        tw = TargetWork(address=address, target=target, change=change)
        live = self._live(target, target_record)
        tw.live = live

        if target_record is None:
            return self._new_target(tw, desired, target, info, material_version)

        change.remote_id = target_record.remote_id
        change.before = recorded_metadata(target_record)
        if self.live is not None and live is None and self._catching_up(target_record, info):
            self.diagnostics.warning(
                "A key imported moments ago is not listed by its cloud yet",
                f"{target_record.remote_id} at {target} was imported less than "
                f"{info.settings.consistency_window():.0f} s ago and the cloud shows new keys only after a delay "
                "(eventual consistency). keyplan does not take it for deleted: run `keyplan plan` again in a minute.",
                address=address,
            )
            change.actions = [ChangeAction.NOOP]
            change.reason = "not listed by the cloud yet (imported moments ago)"
            self.changes.append(change)
            return None
        if live is not None and self._catching_up(target_record, info):
            live = tw.live = _aliases_settling(live, target_record)
        if self.live is not None:
            self._record_drift(address, target, target_record, live, fields)
        if self.options.refresh_only:
            return None

        actions: list[ChangeAction] = []
        reasons: list[str] = []
        current_live = live
        if live is None and self.live is not None and target_record.exists_remotely:
            # The cloud no longer has the key at all: create it again with the same material.
            tw.create = True
            actions.append(ChangeAction.CREATE)
            reasons.append("the key was deleted outside keyplan; it is created again with the same material")
            tw.import_version = target_record.current_material_version or material_version
            tw.import_purpose = ImportPurpose.INITIAL
            current_live = None
        elif not target_record.exists_remotely or not target_record.imports:
            tw.import_version = material_version
            tw.import_purpose = ImportPurpose.INITIAL
            actions.append(ChangeAction.IMPORT)
            tw.unrecorded_versions = self._unrecorded_versions(info, spec, target_record, live)
            reasons.append(self._unrecorded_reason(tw) or "the key holds no material yet")
        else:
            if live is not None and live.state in (KeyState.PENDING_DELETION, KeyState.DELETED):
                tw.cancel_deletion = True
                actions.append(ChangeAction.RESTORE)
                reasons.append("its deletion was scheduled outside keyplan; the deletion is cancelled")
            if live is not None and live.state is KeyState.PENDING_IMPORT:
                current = target_record.imported(target_record.current_material_version or material_version)
                tw.import_version = target_record.current_material_version or material_version
                tw.import_purpose = ImportPurpose.REIMPORT
                tw.reimport_version_id = current.remote_version_id if current else live.current_version
                actions.append(ChangeAction.REIMPORT)
                reasons.append("the cloud lost the material (deleted or expired); the same material is imported again")
            recorded_version = target_record.current_material_version or 0
            if material_version > recorded_version and tw.import_purpose is None:
                tw.import_version = material_version
                tw.import_purpose = ImportPurpose.NEW_VERSION
                tw.promote = True
                actions.append(ChangeAction.ROTATE)
                reasons.append(self._rotation_reason(address, work, material_version))
                tw.unrecorded_versions = self._unrecorded_versions(info, spec, target_record, live)
                if tw.unrecorded_versions:
                    reasons.append(self._unrecorded_reason(tw))
                support = info.plugin.lifecycle_support(info.settings, spec)
                if support.rotation:
                    change.notes.append(f"rotation: {support.rotation_mechanism}")
            renew_at = self._renewal_due(spec, live)
            if renew_at is not None and tw.import_purpose is None:
                current = target_record.imported(recorded_version)
                tw.import_version = recorded_version
                tw.import_purpose = ImportPurpose.REIMPORT
                tw.reimport_version_id = current.remote_version_id if current else None
                actions.append(ChangeAction.REIMPORT)
                reasons.append(
                    f"the material expires at {renew_at.isoformat(timespec='seconds')}; the same material is "
                    "imported again with a new expiry before the key becomes unusable"
                )

        if tw.import_purpose is not None or tw.create:
            if not self._negotiate(tw, desired, target, info):
                return None
        # metadata: desired against the live key (or against state when not refreshed)
        compare_to = live_metadata(current_live) if current_live is not None else change.before
        if current_live is not None:
            change.before = compare_to  # what the update changes is the cloud's key as it is now
        differences = metadata_differences(after, compare_to, fields) if compare_to is not None else []
        if tw.cancel_deletion and "enabled" in fields and spec.enabled:
            differences = sorted(set(differences) | {"enabled"})
        if tw.create:
            differences = metadata_differences(after, as_created(after), fields)
        if differences:
            tw.update = True
            if not tw.create:
                actions.append(ChangeAction.UPDATE)
                reasons.append("changes " + ", ".join(differences))
        if not actions:
            change.actions = [ChangeAction.NOOP]
            change.reason = "up to date"
            self.changes.append(change)
            return None
        change.actions = actions
        change.reason = "; ".join(reasons)
        change.material_version = tw.import_version
        self.changes.append(change)
        return tw

    def _new_target(
        self, tw: TargetWork, desired: DesiredKey, target: str, info: TargetInfo, material_version: int
    ) -> TargetWork | None:
        change = tw.change
        if self.options.refresh_only:
            return None
        candidates = self._by_address.get(target, {}).get(tw.address, [])
        ours = [k for k in candidates if k.managed_by == self.state.managed_by and k.state is not KeyState.DELETED]
        record = self.state.keys.get(tw.address)
        held = record.latest_material if record else None
        if ours and held is None:
            # Tagged by this state, but the state holds no material for the address (removed with
            # `keyplan state rm`): whatever that key holds, keyplan cannot import it again.
            self.diagnostics.warning(
                "A key tagged with this address exists, but the state holds no material for it",
                f"{ours[0].remote_id} at {target} is tagged {tw.address} by this state, yet the state has no material "
                "version for that address (was it removed with `keyplan state rm`?). keyplan creates a new key with new "
                "material; the old key is reported as an orphan by `keyplan drift`. Schedule its deletion in the cloud "
                "when nothing uses it.",
                address=tw.address,
            )
            ours = []
        if ours and held is not None:
            adopted = ours[0]
            tw.adopt = adopted
            tw.adopt_material_version = held.version
            change.remote_id = adopted.remote_id
            change.actions = [ChangeAction.ADOPT]
            change.reason = (
                "a key tagged with this address exists (created by an interrupted apply); it is adopted, not duplicated"
            )
            if adopted.state is KeyState.PENDING_IMPORT:
                tw.import_version = material_version
                tw.import_purpose = ImportPurpose.INITIAL
                change.actions.append(ChangeAction.IMPORT)
            elif adopted.state in (KeyState.PENDING_DELETION, KeyState.DELETED):
                tw.cancel_deletion = True
                change.actions.append(ChangeAction.RESTORE)
            fields = info.plugin.metadata_fields(info.settings)
            if metadata_differences(change.after or Metadata(), live_metadata(adopted), fields):
                tw.update = True
                change.actions.append(ChangeAction.UPDATE)
            change.before = live_metadata(adopted)
        else:
            others = [
                k for k in candidates
                if k.managed_by and k.managed_by != self.state.managed_by and k.state not in _GONE
            ]
            if others and self.new_state and not self.options.allow_new_lineage:
                self._other_lineage.setdefault(target, []).extend(others)
            for other in () if self.new_state and not self.options.allow_new_lineage else others:
                self.diagnostics.warning(
                    "A key with this address belongs to another keyplan state",
                    f"{other.remote_id} at {target} is tagged {tw.address} but managed by {other.managed_by}, "
                    f"not this state ({self.state.managed_by}). keyplan plans a key of its own for this address "
                    "(a target that names keys after their address refuses it while that key exists). "
                    "If that key should be managed here, run `keyplan import` instead.",
                    address=tw.address,
                )
            if self._creation_unsettled(tw, target, info):
                return None
            tw.create = True
            fields = info.plugin.metadata_fields(info.settings)
            tw.update = bool(metadata_differences(change.after or Metadata(), as_created(change.after), fields))
            tw.import_version = material_version
            tw.import_purpose = ImportPurpose.INITIAL
            change.actions = [ChangeAction.CREATE]
            change.reason = "not in state"
        if tw.import_purpose is not None or tw.create:
            if not self._negotiate(tw, desired, target, info):
                return None
        change.material_version = tw.import_version
        self.changes.append(change)
        return tw

    def _refuse_other_lineages(self) -> None:
        """Keys a new state would create while the target holds keyplan-managed keys for the same
        addresses under another lineage: most often the state was lost, and going on would make a
        second key for every address. One error per target, saying how to recover."""
        for target, keys in sorted(self._other_lineage.items()):
            shown = sorted(keys, key=lambda k: (k.address or "", k.remote_id))
            listed = "\n".join(
                _one_line(f"  {k.address}: {k.remote_id} (managed by {k.managed_by})") for k in shown[:10]
            )
            more = f"\n  ... and {len(shown) - 10} more" if len(shown) > 10 else ""
            example = shown[0]
            self.diagnostics.error(
                f"Keys for these addresses already exist at {target}, managed by another keyplan state",
                f"This state ({self.state.managed_by}) has no record of them, so the plan would create a second "
                f"key for each:\n{listed}{more}\n"
                "A lost or replaced state file looks like this. To recover, either:\n"
                "  - restore the state these keys belong to (the backup beside the state file, or your state "
                "history) and plan again: its keys are then recognised and nothing is duplicated;\n"
                "  - or take a key over from its state: remove it there (`keyplan state rm`) and its "
                f"keyplan-managed-by tag, then `keyplan import '{_one_line(example.address or '')}' {target} {_one_line(example.remote_id)}` "
                "here (this state must hold its material);\n"
                "  - or, if those keys belong to another state on purpose (another workspace or configuration "
                "sharing this account), create this state's own keys beside them with `-allow-new-lineage`.",
                address=target,
            )

    def _catching_up(self, record: TargetRecord, info: TargetInfo) -> bool:
        """Whether a key missing from the cloud's listing was imported within the window the cloud
        may take to show new keys (`ProviderSettings.consistency_window`)."""
        window = info.settings.consistency_window()
        latest = max((entry.imported_at for entry in record.imports), default=None)
        return window > 0 and latest is not None and self.now - latest < timedelta(seconds=window)

    def _negotiate(self, tw: TargetWork, desired: DesiredKey, target: str, info: TargetInfo) -> bool:
        capabilities = self.capabilities.get(desired.source)
        if capabilities is None:
            return False  # the source could not be opened; reported elsewhere
        # The same for every key of one algorithm from one source to one target: decided once.
        memo = (desired.source, target, desired.spec.algorithm.name)
        if memo not in self._negotiated:
            offers = info.plugin.wrap_offers(info.settings, desired.spec.algorithm)
            result = negotiate(desired.spec.algorithm, offers, capabilities, source=desired.source, target=target)
            choice = WrapChoice.model_validate(result.choice.model_dump()) if result.choice is not None else None
            self._negotiated[memo] = (result, choice)
        result, choice = self._negotiated[memo]
        if result.offer is None or choice is None:
            self.diagnostics.error(
                "No way to import this key into its target", result.problem, range=desired.range, address=tw.address
            )
            return False
        tw.offer = result.offer
        tw.change.wrap = choice
        tw.prerequisites = info.plugin.prerequisites(info.settings, desired.spec, result.offer)
        if capabilities.trusted_wrapping_only:
            step = (
                f"run `{capabilities.trust_command} '{tw.address}' --target {target}`"
                if capabilities.trust_command
                else f"have the wrapping key of {target} trusted"
            )
            # Without a shared prerequisite, the wrapping key belongs to the key itself: it
            # exists only once the key does.
            when = " (after apply has created the key: its wrapping key comes with it)" if tw.create and not tw.prerequisites else ""
            tw.change.notes.append(
                f"{desired.source} wraps only under wrapping keys its security officer marked trusted: {step} "
                f"before this import{when}"
            )
        return True

    def _renewal_due(self, spec: KeySpec, live: RemoteKey | None) -> datetime | None:
        """When expiring material should be imported again: within the last third of its
        configured lifetime."""
        if live is None or live.expires_at is None or spec.expiry is None or live.state is KeyState.PENDING_IMPORT:
            return None
        window = spec.expiry / 3
        return live.expires_at if live.expires_at - self.now <= window else None

    def _rotation_reason(self, address: str, work: KeyWork, version: int) -> str:
        if work.generate_version is None:
            return f"material version {version} exists but is not yet current here (an earlier rotation was interrupted)"
        if address in self.options.replace or _base(address) in self.options.replace:
            return f"-replace requested: new material version {version}"
        return f"rotation period elapsed: new material version {version}"

    # -- keys removed from configuration -----------------------------------------------------

    def _removed_key(self, record: KeyRecord) -> None:
        if self.options.refresh_only:
            for target, target_record in record.targets.items():
                if self.live is not None:
                    self._record_drift(record.address, target, target_record, self._live(target, target_record), self._fields(target))
            return
        work = KeyWork(address=record.address, source=record.source, forget=True)
        for target, target_record in sorted(record.targets.items()):
            self._delete_target(record.address, record, target, target_record, record.prevent_destroy, work)
        if not record.targets:
            self.changes.append(
                PlannedChange(address=record.address, actions=[ChangeAction.FORGET], reason="no longer in configuration")
            )
        self.work.append(work)

    def _delete_target(
        self,
        address: str,
        record: KeyRecord,
        target: str,
        target_record: TargetRecord,
        prevent_destroy: bool,
        work: KeyWork,
    ) -> None:
        if self.options.refresh_only:
            return
        live = self._live(target, target_record)
        already = target_record.deletion_date is not None or (
            live is not None and live.state in (KeyState.PENDING_DELETION, KeyState.DELETED)
        )
        gone = self.live is not None and live is None and target_record.exists_remotely
        change = PlannedChange(
            address=address,
            target=target,
            actions=[ChangeAction.DELETE],
            remote_id=target_record.remote_id,
            before=recorded_metadata(target_record),
            reason="no longer in configuration" if work.forget else "target removed from the key's `targets`",
        )
        info = self.targets.get(target)
        if info is not None:
            change.notes.append(info.plugin.deletion_note(info.settings))
        if prevent_destroy and not (already or gone or not target_record.exists_remotely):
            where = "its last applied configuration" if work.forget else "its configuration"
            self.diagnostics.error(
                "Key has lifecycle.prevent_destroy set",
                f"{address} at {target} would be scheduled for deletion, but {where} sets "
                "lifecycle { prevent_destroy = true }. Deleting a key destroys every ciphertext made with it. "
                "If you really mean it, set prevent_destroy = false, apply, then remove the key.",
                address=address,
            )
            return
        tw = TargetWork(address=address, target=target, change=change, live=live)
        if already or gone or not target_record.exists_remotely:
            change.actions = [ChangeAction.FORGET]
            change.reason += "; already deleted or never created remotely, only removed from state"
        else:
            tw.delete = target_record.remote_id
        self.changes.append(change)
        work.targets.append(tw)

    # -- drift -------------------------------------------------------------------------------

    def _creation_unsettled(self, tw: TargetWork, target: str, info: TargetInfo) -> bool:
        """An interrupted apply announced creating this key moments ago, within the time its cloud
        may take to list a new key: the key may exist unseen, and creating another would make two.
        Nothing is planned for it until the window has passed (the next plan finds and adopts it,
        or creates it if the call never reached the cloud)."""
        address, window = tw.address, info.settings.consistency_window()
        started = max((when for a, t, when in self.options.unsettled_creates if (a, t) == (address, target)), default=None)
        if started is None or self.live is None or (self.now - started).total_seconds() >= window:
            return False
        wait = window - (self.now - started).total_seconds()
        self.diagnostics.warning(
            "A key an interrupted apply was creating may not be listed yet",
            f"An apply that was interrupted started creating {address} at {target} at "
            f"{started.isoformat(timespec='seconds')}, and {target}'s cloud may take up to {window:.0f} s to list a "
            f"new key (eventual consistency). keyplan plans nothing for it rather than risk a second key: run "
            f"`keyplan plan` again in {wait:.0f} s, when a key it made will be listed and adopted.",
            address=address,
        )
        tw.change.actions = [ChangeAction.NOOP]
        tw.change.reason = "being created by an interrupted apply; not listed by its cloud yet"
        self.changes.append(tw.change)
        return True

    @staticmethod
    def _unrecorded_versions(
        info: TargetInfo, spec: KeySpec, record: TargetRecord, live: RemoteKey | None
    ) -> tuple[str, ...]:
        """Versions holding material that the key shows and state does not record, made since
        the last import state records, at a cloud where an import adds a version: most likely an
        import whose answer a crash lost. Versions older than that import (a key's history from
        before `keyplan import` adopted it) are not candidates."""
        if live is None or live.versions is None:
            return ()
        if not info.plugin.lifecycle_support(info.settings, spec).import_adds_version:
            return ()
        recorded = {i.remote_version_id for i in record.imports}
        # a minute's margin for the clocks of keyplan (imported_at) and the cloud (created_at)
        since = max((i.imported_at for i in record.imports), default=None)
        since = since - timedelta(minutes=1) if since is not None else None
        return tuple(
            v.version_id
            for v in live.versions
            if v.imported
            and v.state in _HOLDS_MATERIAL
            and v.version_id not in recorded
            and (since is None or v.created_at is None or v.created_at > since)
        )

    @staticmethod
    def _unrecorded_reason(tw: TargetWork) -> str:
        if not tw.unrecorded_versions:
            return ""
        listed = ", ".join(tw.unrecorded_versions[:3]) + (" ..." if len(tw.unrecorded_versions) > 3 else "")
        return (
            f"the key holds {len(tw.unrecorded_versions)} version(s) state does not record ({listed}), left by an "
            f"interrupted apply: one holding material v{tw.import_version} is recorded instead of importing it again"
        )

    def _live(self, target: str, record: TargetRecord | None) -> RemoteKey | None:
        if record is None:
            return None
        return self._live_by_id.get(target, {}).get(record.remote_id)

    def _fields(self, target: str) -> frozenset[str]:
        info = self.targets.get(target)
        return info.plugin.metadata_fields(info.settings) if info else frozenset({"labels", "enabled"})

    def _record_drift(
        self, address: str, target: str, record: TargetRecord, live: RemoteKey | None, fields: frozenset[str]
    ) -> None:
        def add(kind: DriftKind, summary: str, recorded: dict[str, object] | None = None, now: dict[str, object] | None = None) -> None:
            self.drift.append(
                Drift(
                    address=address,
                    target=target,
                    kind=kind,
                    summary=summary,
                    remote_id=record.remote_id,
                    recorded=recorded or {},
                    live=now or {},
                )
            )

        if not record.exists_remotely:
            return
        if record.deletion_date is not None:
            return  # keyplan scheduled this deletion itself
        if live is None:
            add(DriftKind.DELETED, "the key no longer exists in the cloud")
            return
        if live.state in (KeyState.PENDING_DELETION, KeyState.DELETED):
            add(
                DriftKind.DELETION_SCHEDULED,
                "the key was scheduled for deletion (or soft-deleted) outside keyplan",
                {"state": "active"},
                {"state": live.state.value, "deletion_date": live.deletion_date.isoformat() if live.deletion_date else None},
            )
            return
        if live.state is KeyState.PENDING_IMPORT and record.imports:
            add(
                DriftKind.MATERIAL_MISSING,
                "the key holds no material: it was deleted or expired outside keyplan",
                {"imported_versions": [i.remote_version_id for i in record.imports]},
                {"state": live.state.value},
            )
        if "enabled" in fields and live.state is not KeyState.PENDING_IMPORT and live.enabled != record.enabled:
            add(
                DriftKind.DISABLED if not live.enabled else DriftKind.ENABLED,
                "the key was disabled outside keyplan" if not live.enabled else "the key was enabled outside keyplan",
                {"enabled": record.enabled},
                {"enabled": live.enabled},
            )
        edited = [f for f in ("labels", "aliases", "description") if f in fields]
        recorded_meta, live_meta = recorded_metadata(record), live_metadata(live)
        changed = [f for f in edited if getattr(recorded_meta, f) != getattr(live_meta, f)]
        if changed:
            add(
                DriftKind.METADATA_EDITED,
                "edited outside keyplan: " + ", ".join(changed),
                {f: getattr(recorded_meta, f) for f in changed},
                {f: getattr(live_meta, f) for f in changed},
            )
        current = record.imported(record.current_material_version or 0)
        if (
            current is not None
            and live.current_version is not None
            and live.state is not KeyState.PENDING_IMPORT
            and live.current_version != current.remote_version_id
        ):
            add(
                DriftKind.UNEXPECTED_VERSION,
                "a version keyplan did not import is current",
                {"current_version": current.remote_version_id},
                {"current_version": live.current_version},
            )
        horizon = self.options.expiry_horizon
        if horizon is not None and live.expires_at is not None and live.expires_at <= self.now + horizon:
            add(
                DriftKind.EXPIRING,
                f"the material expires at {live.expires_at.isoformat(timespec='seconds')}",
                {},
                {"expires_at": live.expires_at.isoformat()},
            )

    def _orphans(self) -> None:
        known = {
            (target, tr.remote_id) for record in self.state.keys.values() for target, tr in record.targets.items()
        }
        adopted = {(c.target, c.remote_id) for c in self.changes if ChangeAction.ADOPT in c.actions}
        for target, keys in self._live_by_id.items():
            for key in keys.values():
                if key.managed_by != self.state.managed_by or (target, key.remote_id) in known | adopted:
                    continue
                if key.state in (KeyState.PENDING_DELETION, KeyState.DELETED):
                    continue
                if key.address in self.desired and not self.options.refresh_only:
                    continue
                self.drift.append(
                    Drift(
                        address=key.address or "(unknown)",
                        target=target,
                        kind=DriftKind.ORPHAN,
                        summary="tagged as managed by this state, but the state does not know it",
                        remote_id=key.remote_id,
                        live={"state": key.state.value},
                    )
                )


_GONE = (KeyState.PENDING_DELETION, KeyState.DELETED)
_HOLDS_MATERIAL = (VersionState.ENABLED, VersionState.DISABLED, VersionState.PENDING_ROTATION)


def _one_line(text: str) -> str:
    """A value from a cloud's tags on one line of a message, so it cannot start lines of its own."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _base(address: str) -> str:
    return address.split("[", 1)[0]


def diff(
    desired: dict[str, DesiredKey],
    state: State,
    live: dict[str, Inventory] | None,
    targets: dict[str, TargetInfo],
    capabilities: dict[str, SourceCapabilities],
    options: PlanOptions,
    now: datetime,
    *,
    new_state: bool = False,
) -> DiffResult:
    """`new_state`: the state document does not exist yet. A new state that meets keys another
    state manages under the same addresses was most likely lost, so the plan stops (unless
    `options.allow_new_lineage`); an existing state planning beside them is only warned."""
    return _Differ(desired, state, live, targets, capabilities, options, now, new_state).run()


def _aliases_settling(live: RemoteKey, record: TargetRecord) -> RemoteKey:
    """The live key with the aliases keyplan recorded and the cloud does not list yet: within the
    consistency window a listing may lag behind the calls that created them, so recorded aliases
    missing from it (and none listed that keyplan did not record) are not an edit."""
    if set(live.aliases) < set(record.aliases):
        return live.model_copy(update={"aliases": tuple(record.aliases)})
    return live
