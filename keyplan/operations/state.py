"""Reading the state and editing it deliberately: `keyplan show`, `state list|show|rm|mv|pull|push`
and `force-unlock`. Every edit runs under the state lock and is written with the next serial,
the previous copy kept as the backup."""

from __future__ import annotations

from dataclasses import dataclass

from keyplan.addresses import canonical
from keyplan.config.model import Config
from keyplan.diagnostics import DiagnosticsError
from keyplan.operations.workspace import LockOptions, locked, read_state, state_backend
from keyplan.state.backend import LockInfo
from keyplan.state.edits import Move
from keyplan.state.model import KeyRecord, State


def current(config: Config) -> State | None:
    """The state as stored, or None when there is none yet (no lock: a read-only look)."""
    return state_backend(config).read()


def key_record(config: Config, address: str) -> tuple[State, KeyRecord]:
    address = canonical(address)
    state = current(config)
    if state is None or address not in state.keys:
        known = ", ".join(sorted(state.keys)[:5]) if state else ""
        raise DiagnosticsError.single(
            f"No key {address} in state",
            "Run `keyplan state list` to see the addresses in state." + (f" Some are: {known}." if known else ""),
        )
    return state, state.keys[address]


def _existing(state: State, exists: bool) -> State:
    if not exists:
        raise DiagnosticsError.single("No state", "There is no state yet: nothing to change. Run `keyplan apply` first.")
    return state


def remove(config: Config, addresses: list[str], *, lock: LockOptions) -> tuple[State, list[KeyRecord]]:
    """`keyplan state rm`: stop managing keys; the remote keys stay as they are."""
    from keyplan.state.edits import remove as remove_records

    backend = state_backend(config)
    with locked(backend, "state rm", lock):
        state = _existing(*read_state(backend))
        removed = remove_records(state, [canonical(address) for address in addresses])
        backend.write(state)
    return state, removed


@dataclass(frozen=True)
class MoveOutcome:
    state: State
    moves: list[Move]
    retagged: list[str]  # "TARGET REMOTE_ID" of every remote key whose keyplan-address tag was rewritten


def move(config: Config, source: str, destination: str, *, retag: bool, lock: LockOptions) -> MoveOutcome:
    """`keyplan state mv`: rename a key in state and (with `retag`) rewrite its remote keys'
    keyplan-address tags first; any failure to retag stops the move before state changes."""
    from keyplan.adopt import retag_remote_keys
    from keyplan.state.edits import apply_moves, plan_moves

    backend = state_backend(config)
    with locked(backend, "state mv", lock):
        state = _existing(*read_state(backend))
        moves = plan_moves(state, canonical(source), canonical(destination))
        retagged: list[str] = []
        if retag:
            for planned in moves:
                retagged += retag_remote_keys(config, state, planned.record, planned.destination)
        apply_moves(state, moves)
        backend.write(state)
    return MoveOutcome(state, moves, retagged)


def push(config: Config, incoming: State, *, force: bool, origin: str, lock: LockOptions) -> State | None:
    """`keyplan state push`: replace the state; returns the state it replaced."""
    from keyplan.state.edits import check_push

    backend = state_backend(config)
    with locked(backend, "state push", lock):
        replaced = backend.read()
        check_push(replaced, incoming, force=force, origin=origin)
        backend.write(incoming)
    return replaced


def force_unlock(config: Config, lock_id: str) -> LockInfo:
    return state_backend(config).force_unlock(lock_id)
