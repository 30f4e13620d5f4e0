"""The action graph: the planned work as single source and provider operations with their
real dependencies, built from the diff's work items (never from configuration).

For one key at one target the chain is: prerequisites (key ring, import job, KEK) -> create
key -> get import parameters -> wrap (after the material was generated) -> import -> promote
(rotation) -> update metadata. Shared prerequisites are one node however many keys need them.
Deletions come last per key and are followed by forgetting the key in state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel

from keyplan.escaping import for_terminal
from keyplan.heap import trusted
from keyplan.plan.model import (
    Action,
    ActionKind,
    AdoptKey,
    AdoptKeyArgs,
    CancelDeletion,
    CreateKey,
    CreateKeyArgs,
    EnsurePrerequisite,
    EnsurePrerequisiteArgs,
    ForgetKey,
    ForgetKeyArgs,
    GenerateMaterial,
    GenerateMaterialArgs,
    GetImportParameters,
    GetImportParametersArgs,
    ImportMaterial,
    ImportMaterialArgs,
    PromoteVersion,
    PromoteVersionArgs,
    RecordProtection,
    RecordProtectionArgs,
    RemoteKeyArgs,
    ScheduleDeletion,
    ScheduleDeletionArgs,
    UpdateKey,
    VerifyMaterial,
    VerifyMaterialArgs,
    WrapMaterial,
    WrapMaterialArgs,
)
from keyplan.plan.work import KeyWork, TargetWork

# networkx (a tenth of a second to import) is imported where a graph is built or walked, so the
# commands that only name these types (`keyplan -help`, `show`, `log`) do not load it.
if TYPE_CHECKING:
    import networkx as nx

_Args = TypeVar("_Args", bound=BaseModel)


class ActionGraph:
    def __init__(self, actions: list[Action]) -> None:
        import networkx as nx

        self.actions = {a.id: a for a in actions}
        self.graph: nx.DiGraph = nx.DiGraph()
        self.graph.add_nodes_from(self.actions)
        self.graph.add_edges_from((dependency, action.id) for action in actions for dependency in action.depends_on)
        if not nx.is_directed_acyclic_graph(self.graph):
            cycle = nx.find_cycle(self.graph)
            raise AssertionError(f"action graph has a cycle: {cycle}")

    @classmethod
    def checked(cls, actions: list[Action]) -> ActionGraph | None:
        """The graph of `actions`, or None when they wait on each other in a circle."""
        try:
            return cls(actions)
        except AssertionError:
            return None

    def ancestors(self, action_id: str) -> set[str]:
        import networkx as nx

        return set(nx.ancestors(self.graph, action_id))

    def order(self) -> list[Action]:
        import networkx as nx

        return [self.actions[i] for i in nx.lexicographical_topological_sort(self.graph)]

    def descendants(self, action_id: str) -> set[str]:
        import networkx as nx

        return set(nx.descendants(self.graph, action_id))

    def to_dot(self) -> str:
        lines = ["digraph keyplan {", '  rankdir = "LR";', '  node [shape = box, fontname = "monospace"];']
        for action in self.order():
            lines.append(f'  "{_dot(action.id)}" [label = "{_dot(action.label)}"];')
        for a, b in sorted(self.graph.edges):
            lines.append(f'  "{_dot(a)}" -> "{_dot(b)}";')
        lines.append("}")
        return "\n".join(lines) + "\n"


def _dot(text: str) -> str:
    # Addresses carry for_each keys from configuration: controls shown escaped, quotes kept inside.
    return for_terminal(text).replace("\\", "\\\\").replace('"', '\\"')


class _Builder:
    """Builds the actions of the diff's work. They are made with `trusted`: every value comes
    from the diff's own typed work items, so validating or copying each of the (at 100,000
    keys, half a million) models again would only cost time and memory."""

    def __init__(self, verify: bool = False) -> None:
        self.actions: list[Action] = []
        self._ids: set[str] = set()
        self._args: dict[tuple[object, ...], BaseModel] = {}
        self.verify = verify

    def shared(self, cls: type[_Args], **values: Any) -> _Args:
        """Arguments of one kind with the same values are one object for every action that
        has them (version 1, no key replaced, the negotiated offer: one each, not one per
        key); nothing changes an action's arguments once planned."""
        key = (cls, *((name, id(v) if isinstance(v, BaseModel) else v) for name, v in values.items()))
        found = self._args.get(key)
        if found is None:
            found = self._args[key] = trusted(cls, **values)
        return cast(_Args, found)

    def add(self, action: Action) -> str:
        """Add an action unless one with its id is there already (shared prerequisites)."""
        if action.id not in self._ids:
            self._ids.add(action.id)
            self.actions.append(action)
        return action.id

    def key(self, work: KeyWork) -> None:
        generate = None
        if work.generate_version is not None:
            generate = self.add(
                trusted(
                    GenerateMaterial,
                    id=_id(ActionKind.GENERATE_MATERIAL, f"{work.address} v{work.generate_version}"),
                    address=work.address,
                    source=work.source,
                    args=self.shared(GenerateMaterialArgs, version=work.generate_version),
                )
            )
        finals: list[str | None] = []
        for tw in work.targets:
            finals.append(self.target(work, tw, generate))
        if work.protect is not None:
            self.add(
                trusted(
                    RecordProtection,
                    id=_id(ActionKind.RECORD_PROTECTION, work.address),
                    address=work.address,
                    args=self.shared(RecordProtectionArgs, prevent_destroy=work.protect),
                )
            )
        if work.forget:
            self.add(
                trusted(
                    ForgetKey,
                    id=_id(ActionKind.FORGET_KEY, work.address),
                    address=work.address,
                    depends_on=_deps(finals),
                )
            )

    def target(self, work: KeyWork, tw: TargetWork, generate: str | None) -> str | None:
        where = f"{tw.address} @ {tw.target}"
        if tw.delete is not None:
            return self.add(
                trusted(
                    ScheduleDeletion,
                    id=_id(ActionKind.SCHEDULE_DELETION, where),
                    address=tw.address,
                    target=tw.target,
                    args=trusted(ScheduleDeletionArgs, remote_id=tw.delete),
                )
            )
        if not any((tw.create, tw.adopt, tw.cancel_deletion, tw.import_purpose, tw.update, tw.promote)):
            # state-only removal of a target that is already gone
            return self.add(
                trusted(
                    ForgetKey,
                    id=_id(ActionKind.FORGET_KEY, where),
                    address=tw.address,
                    target=tw.target,
                    args=self.shared(ForgetKeyArgs, target_only=True),
                )
            )
        previous: str | None = None
        for spec in tw.prerequisites:
            previous = self.add(
                trusted(
                    EnsurePrerequisite,
                    id=_id(ActionKind.ENSURE_PREREQUISITE, f"{tw.target} {spec.id}"),
                    target=tw.target,
                    args=self.shared(EnsurePrerequisiteArgs, spec=spec),
                    depends_on=_deps([previous]),
                )
            )
        last_prerequisite = previous
        head: str | None = last_prerequisite
        if tw.adopt is not None:
            head = self.add(
                trusted(
                    AdoptKey,
                    id=_id(ActionKind.ADOPT_KEY, where),
                    address=tw.address,
                    target=tw.target,
                    args=trusted(
                        AdoptKeyArgs,
                        remote_id=tw.adopt.remote_id,
                        live=tw.adopt,
                        material_version=tw.adopt_material_version,
                    ),
                    depends_on=_deps([head]),
                )
            )
        if tw.cancel_deletion:
            head = self.add(
                trusted(
                    CancelDeletion,
                    id=_id(ActionKind.CANCEL_DELETION, where),
                    address=tw.address,
                    target=tw.target,
                    args=trusted(RemoteKeyArgs, remote_id=tw.change.remote_id),
                    depends_on=_deps([head]),
                )
            )
        if tw.create:
            # Material first, remote key second: a key that exists in a cloud always has its
            # material in state, so a crash right after CreateKey can be healed by adoption.
            head = self.add(
                trusted(
                    CreateKey,
                    id=_id(ActionKind.CREATE_KEY, where),
                    address=tw.address,
                    target=tw.target,
                    args=self.shared(CreateKeyArgs, replaces=tw.change.remote_id),
                    depends_on=_deps([head, generate]),
                )
            )
        if tw.import_purpose is not None and tw.import_version is not None and tw.offer is not None:
            version = tw.import_version
            step = f"{where} v{version}"
            params = self.add(
                trusted(
                    GetImportParameters,
                    id=_id(ActionKind.GET_IMPORT_PARAMETERS, step),
                    address=tw.address,
                    target=tw.target,
                    args=self.shared(GetImportParametersArgs, offer=tw.offer),
                    depends_on=_deps([head, last_prerequisite]),
                )
            )
            wrapped = self.add(
                trusted(
                    WrapMaterial,
                    id=_id(ActionKind.WRAP_MATERIAL, step),
                    address=tw.address,
                    target=tw.target,
                    source=work.source,
                    args=trusted(WrapMaterialArgs, version=version, parameters_action=params),
                    depends_on=_deps([params, generate]),
                )
            )
            head = self.add(
                trusted(
                    ImportMaterial,
                    id=_id(ActionKind.IMPORT_MATERIAL, step),
                    address=tw.address,
                    target=tw.target,
                    args=trusted(
                        ImportMaterialArgs,
                        version=version,
                        purpose=tw.import_purpose,
                        reimport_version_id=tw.reimport_version_id,
                        unrecorded_versions=tw.unrecorded_versions,
                        parameters_action=params,
                        wrap_action=wrapped,
                        offer=tw.offer,
                    ),
                    depends_on=_deps([wrapped]),
                )
            )
            if tw.promote:
                head = self.add(
                    trusted(
                        PromoteVersion,
                        id=_id(ActionKind.PROMOTE_VERSION, step),
                        address=tw.address,
                        target=tw.target,
                        args=self.shared(PromoteVersionArgs, version=version),
                        depends_on=_deps([head]),
                    )
                )
            if self.verify:
                head = self.add(
                    trusted(
                        VerifyMaterial,
                        id=_id(ActionKind.VERIFY_MATERIAL, step),
                        address=tw.address,
                        target=tw.target,
                        args=self.shared(VerifyMaterialArgs, version=version),
                        depends_on=_deps([head]),
                    )
                )
        if tw.update:
            head = self.add(
                trusted(
                    UpdateKey,
                    id=_id(ActionKind.UPDATE_KEY, where),
                    address=tw.address,
                    target=tw.target,
                    depends_on=_deps([head]),
                )
            )
        return head


def _id(kind: ActionKind, ident: str) -> str:
    return f"{kind.value} {ident}"


def _deps(depends_on: list[str | None]) -> list[str]:
    return sorted({d for d in depends_on if d})


def build_actions(work: list[KeyWork], *, verify: bool = False) -> list[Action]:
    """The action graph of the plan's work; with `verify`, each import is followed by its proof."""
    builder = _Builder(verify)
    for item in work:
        builder.key(item)
    # Acyclic by construction (prerequisites, then each key's own chain); apply checks the graph
    # it walks again (ActionGraph, Scheduler).
    return builder.actions
