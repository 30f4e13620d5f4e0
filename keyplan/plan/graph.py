"""The action graph: the planned work as single source and provider operations with their
real dependencies, built from the diff's work items (never from configuration).

For one key at one target the chain is: prerequisites (key ring, import job, KEK) -> create
key -> get import parameters -> wrap (after the material was generated) -> import -> promote
(rotation) -> update metadata. Shared prerequisites are one node however many keys need them.
Deletions come last per key and are followed by forgetting the key in state.
"""

from __future__ import annotations

import networkx as nx

from keyplan.plan.diff import KeyWork, TargetWork
from keyplan.plan.model import Action, ActionKind


class ActionGraph:
    def __init__(self, actions: list[Action]) -> None:
        self.actions = {a.id: a for a in actions}
        self.graph: nx.DiGraph = nx.DiGraph()
        for action in actions:
            self.graph.add_node(action.id)
            for dependency in action.depends_on:
                self.graph.add_edge(dependency, action.id)
        if not nx.is_directed_acyclic_graph(self.graph):
            cycle = nx.find_cycle(self.graph)
            raise AssertionError(f"action graph has a cycle: {cycle}")

    def order(self) -> list[Action]:
        return [self.actions[i] for i in nx.lexicographical_topological_sort(self.graph)]

    def descendants(self, action_id: str) -> set[str]:
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
    return text.replace("\\", "\\\\").replace('"', '\\"')


class _Builder:
    def __init__(self) -> None:
        self.actions: list[Action] = []
        self._ids: set[str] = set()

    def add(self, kind: ActionKind, ident: str, depends_on: list[str | None], **fields: object) -> str:
        action_id = f"{kind.value} {ident}"
        if action_id in self._ids:
            return action_id
        self._ids.add(action_id)
        deps = sorted({d for d in depends_on if d})
        self.actions.append(Action(id=action_id, kind=kind, depends_on=deps, **fields))
        return action_id

    def key(self, work: KeyWork) -> None:
        generate = None
        if work.generate_version is not None:
            generate = self.add(
                ActionKind.GENERATE_MATERIAL,
                f"{work.address} v{work.generate_version}",
                [],
                address=work.address,
                source=work.source,
                args={"version": work.generate_version},
            )
        finals: list[str | None] = []
        for tw in work.targets:
            finals.append(self.target(work, tw, generate))
        if work.forget:
            self.add(ActionKind.FORGET_KEY, work.address, finals, address=work.address, args={})

    def target(self, work: KeyWork, tw: TargetWork, generate: str | None) -> str | None:
        where = f"{tw.address} @ {tw.target}"
        common = {"address": tw.address, "target": tw.target}
        if tw.delete:
            return self.add(
                ActionKind.SCHEDULE_DELETION, where, [], **common, args={"remote_id": tw.change.remote_id}
            )
        if not any((tw.create, tw.adopt, tw.cancel_deletion, tw.import_purpose, tw.update, tw.promote)):
            # state-only removal of a target that is already gone
            return self.add(ActionKind.FORGET_KEY, where, [], **common, args={"target_only": True})
        previous: str | None = None
        for spec in tw.prerequisites:
            previous = self.add(
                ActionKind.ENSURE_PREREQUISITE,
                f"{tw.target} {spec.id}",
                [previous],
                target=tw.target,
                args={"spec": spec.model_dump(mode="json")},
            )
        last_prerequisite = previous
        head: str | None = last_prerequisite
        if tw.adopt is not None:
            head = self.add(
                ActionKind.ADOPT_KEY,
                where,
                [head],
                **common,
                args={
                    "remote_id": tw.adopt.remote_id,
                    "live": tw.adopt.model_dump(mode="json"),
                    "material_version": tw.adopt_material_version,
                },
            )
        if tw.cancel_deletion:
            head = self.add(
                ActionKind.CANCEL_DELETION, where, [head], **common, args={"remote_id": tw.change.remote_id}
            )
        if tw.create:
            # Material first, remote key second: a key that exists in a cloud always has its
            # material in state, so a crash right after CreateKey can be healed by adoption.
            head = self.add(
                ActionKind.CREATE_KEY, where, [head, generate], **common, args={"replaces": tw.change.remote_id}
            )
        if tw.import_purpose is not None and tw.import_version is not None and tw.offer is not None:
            version = tw.import_version
            params = self.add(
                ActionKind.GET_IMPORT_PARAMETERS,
                f"{where} v{version}",
                [head, last_prerequisite],
                **common,
                args={"offer": tw.offer.model_dump(mode="json")},
            )
            wrapped = self.add(
                ActionKind.WRAP_MATERIAL,
                f"{where} v{version}",
                [params, generate],
                **common,
                source=work.source,
                args={"version": version, "parameters_action": params},
            )
            head = self.add(
                ActionKind.IMPORT_MATERIAL,
                f"{where} v{version}",
                [wrapped],
                **common,
                args={
                    "version": version,
                    "purpose": tw.import_purpose.value,
                    "reimport_version_id": tw.reimport_version_id,
                    "parameters_action": params,
                    "wrap_action": wrapped,
                    "offer": tw.offer.model_dump(mode="json"),
                },
            )
            if tw.promote:
                head = self.add(ActionKind.PROMOTE_VERSION, f"{where} v{version}", [head], **common, args={"version": version})
        if tw.update:
            head = self.add(ActionKind.UPDATE_KEY, where, [head], **common, args={})
        return head


def build_actions(work: list[KeyWork]) -> list[Action]:
    builder = _Builder()
    for item in work:
        builder.key(item)
    ActionGraph(builder.actions)  # checks it is acyclic
    return builder.actions
