"""Deliberate edits of the state, behind `keyplan state rm | mv | push`: pure functions on a
`State` that refuse what would lose or confuse records and say why.

An address argument names one key instance (`key.app["payments"]`) or, without an index,
every instance of a key block (`key.app`). The CLI takes the state lock, applies one of
these and writes the result with the next serial; nothing here touches a cloud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keyplan.diagnostics import DiagnosticsError
from keyplan.state.model import KeyRecord, State

_ADDRESS = re.compile(r'key\.[A-Za-z_][A-Za-z0-9_-]*(\["(?:[^"\\]|\\.)*"\])?')


def matching(state: State, address: str) -> list[str]:
    """The addresses in state that `address` names: itself, or every instance of a key block."""
    if address in state.keys:
        return [address]
    if "[" not in address:
        return sorted(a for a in state.keys if a.startswith(address + "["))
    return []


def _unknown(address: str, state: State) -> DiagnosticsError:
    known = sorted(state.keys)
    some = f" Addresses in state include: {', '.join(known[:5])}." if known else " The state holds no keys."
    return DiagnosticsError.single(
        f"No key {address} in state",
        f"Nothing in state matches {address}.{some} Run `keyplan state list` to see them all, and quote the "
        "address for your shell, e.g. 'key.app[\"payments\"]'.",
    )


def remove(state: State, addresses: list[str]) -> list[KeyRecord]:
    """Drop the named keys from state (all or nothing) and return their records."""
    names: list[str] = []
    for address in addresses:
        found = matching(state, address)
        if not found:
            raise _unknown(address, state)
        names.extend(a for a in found if a not in names)
    protected = [name for name in names if state.keys[name].prevent_destroy]
    if protected:
        raise DiagnosticsError.single(
            "Key has lifecycle.prevent_destroy set",
            f"{', '.join(protected)} {'is' if len(protected) == 1 else 'are'} protected in state "
            "(lifecycle { prevent_destroy = true }). Removing a protected key from state would let it be deleted "
            "without keyplan noticing. Set prevent_destroy = false and apply first; then remove it.",
        )
    return [state.keys.pop(name) for name in names]


@dataclass(frozen=True)
class Move:
    source: str
    destination: str
    record: KeyRecord


def plan_moves(state: State, source: str, destination: str) -> list[Move]:
    """What `state mv SOURCE DESTINATION` would rename; refuses unknown sources, taken or
    malformed destinations. A key block without an index moves with all its instances."""
    if not _ADDRESS.fullmatch(destination):
        raise DiagnosticsError.single(
            f"Invalid destination address {destination}",
            'A key address is key.NAME or key.NAME["INSTANCE"], e.g. key.app["payments"]. Quote it for your shell.',
        )
    found = matching(state, source)
    if not found:
        raise _unknown(source, state)
    whole_block = found != [source]
    if whole_block and "[" in destination:
        raise DiagnosticsError.single(
            f"Cannot move every instance of {source} into one instance",
            f"{source} names {len(found)} instances ({', '.join(found[:3])}…). Move them to another key block "
            f"(e.g. key.NEWNAME), or move one instance at a time.",
        )
    moves = [
        Move(name, destination + name[len(source) :] if whole_block else destination, state.keys[name])
        for name in found
    ]
    for move in moves:
        if move.destination in state.keys and move.destination not in found:
            raise DiagnosticsError.single(
                f"{move.destination} is already in state",
                f"Moving {move.source} to {move.destination} would overwrite the record of another key. Remove or "
                "move that key first (`keyplan state rm` / `keyplan state mv`).",
            )
        if move.source == move.destination:
            raise DiagnosticsError.single(
                "Source and destination are the same", f"{move.source} is already at that address; nothing to move."
            )
    return moves


def apply_moves(state: State, moves: list[Move]) -> None:
    records = {m.source: state.keys.pop(m.source) for m in moves}
    for move in moves:
        state.keys[move.destination] = records[move.source].model_copy(update={"address": move.destination})


def check_push(current: State | None, incoming: State, *, force: bool, origin: str) -> None:
    """Refuse replacing the state with another history or an older or equal copy, unless forced."""
    if current is None or force:
        return
    if incoming.lineage != current.lineage:
        raise DiagnosticsError.single(
            "Pushed state belongs to a different lineage",
            f"{origin} has lineage {incoming.lineage}; the current state has lineage {current.lineage}. They are "
            "different histories, so pushing would replace every record keyplan keeps here (and the remote keys of "
            "this state would look like orphans). Check that you are pushing the right file; if you really mean to "
            "replace the state, pass -force.",
        )
    if incoming.serial <= current.serial:
        raise DiagnosticsError.single(
            "Pushed state is not newer than the current state",
            f"{origin} has serial {incoming.serial}; the current state is at serial {current.serial}. Pushing it "
            "would undo later writes. Pull the state again (`keyplan state pull`), make your change on that copy and "
            "raise its serial above the current one, or pass -force if you mean to roll back.",
        )
