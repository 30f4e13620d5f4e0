"""keyplan CLI commands for review and adoption workflows (registered by keyplan.cli.main):

- `keyplan log`: the audit trail of every remote change applies made;
- `keyplan import` and `keyplan discover`: bring existing imported keys under management;
- `keyplan state rm | mv | pull | push`: deliberate edits of the state, under the state lock,
  each written with the next serial and the previous copy kept as the backup.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from keyplan.cli import ui
from keyplan.cli.main import (
    LockOpt,
    LockTimeoutOpt,
    NoColorOpt,
    VarFileOpt,
    VarOpt,
    backend_for,
    emit,
    load,
    read_state,
    state_lock,
)
from keyplan.config.model import Config
from keyplan.diagnostics import DiagnosticsError
from keyplan.files import write_atomically
from keyplan.state.local import parse_state, serialize_state
from keyplan.state.model import KeyRecord, State


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("log")(log)
    app.command("import")(import_key)
    app.command("discover")(discover)
    state_app.command("rm")(state_rm)
    state_app.command("mv")(state_mv)
    state_app.command("pull")(state_pull)
    state_app.command("push")(state_push)


# ---------------------------------------------------------------------------------------------
# keyplan log
# ---------------------------------------------------------------------------------------------


def log(
    json_output: Annotated[bool, typer.Option("-json", "--json", help="Print the entries as a JSON array.")] = False,
    count: Annotated[int | None, typer.Option("-n", "--n", min=1, help="Show only the last N entries.")] = None,
    verify: Annotated[
        bool,
        typer.Option("-verify", "--verify", help="Check the hash chain: find edited, removed, reordered or cut-off entries."),
    ] = False,
) -> None:
    """Show the audit trail: every remote change keyplan made, oldest first."""
    from keyplan.apply.audit import AUDIT_FILE, read_audit, verify_chain

    config = load([], [], no_color=True, validate=False)
    path = Path(config.directory) / ".keyplan" / AUDIT_FILE
    if verify:
        read, problems = verify_chain(path)
        if problems:
            raise DiagnosticsError.single(
                "The audit trail was tampered with",
                f"{path} fails its hash-chain check:"
                + "".join(f"\n  - {f'line {p.line}: ' if p.line else ''}{p.problem}" for p in problems)
                + "\nKeep the file as evidence and compare it with a copy kept elsewhere.",
            )
        emit(f"The audit trail is intact: {read} entries, each chained to the one before.\n")
        return
    try:
        entries = read_audit(path)
    except json.JSONDecodeError as exc:
        raise DiagnosticsError.single(
            "The audit log is damaged",
            f"{path} line {exc.lineno} is not JSON. Each line is one JSON object written by an apply; a line cut "
            "short by a crash can be deleted, the others are intact.",
        ) from None
    if count is not None:
        entries = entries[-count:]
    if json_output:
        emit(json.dumps(entries, indent=2) + "\n")
        return
    if not entries:
        emit(f"No audit entries yet. Every remote change an apply makes is recorded in {path}.\n")
        return
    emit(_audit_table(entries))


def _audit_table(entries: list[dict[str, Any]]) -> str:
    rows = [("TIME", "WHO", "ACTION", "KEY", "TARGET", "OUTCOME", "REMOTE ID")]
    for e in entries:
        when = str(e.get("time", ""))[:19].replace("T", " ")
        outcome = str(e.get("outcome", ""))
        detail = e.get("detail")
        rows.append(
            (
                when,
                f"{e.get('user', '?')}@{e.get('host', '?')}",
                str(e.get("action", "")),
                str(e.get("address") or "-"),
                str(e.get("target") or "-"),
                f"{outcome}: {detail}" if detail else outcome,
                str(e.get("remote_id") or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


# ---------------------------------------------------------------------------------------------
# keyplan import / discover
# ---------------------------------------------------------------------------------------------


def import_key(
    address: Annotated[str, typer.Argument(metavar="ADDR", help='The key address in the configuration, e.g. key.app["payments"].')],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="The provider address, e.g. aws.main.")],
    remote_id: Annotated[str, typer.Argument(metavar="REMOTE_ID", help="The cloud's id of the key (ARN, resource name, key id).")],
    var: VarOpt = [],  # noqa: B006 - typer reads defaults
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Bring an existing imported key under management without replacing it."""
    from keyplan.adopt import check_importable, import_remote_key
    from keyplan.runtime import Session

    config = load(var, var_file, no_color=no_color)
    backend = backend_for(config)
    with state_lock(backend, "import", lock, lock_timeout):
        state, exists = read_state(backend)
        record = check_importable(config, state, address, target, remote_id)
        with Session(config) as session:
            outcome = import_remote_key(session, state, record, target, remote_id, datetime.now(UTC))
        record.targets[target] = outcome.record
        backend.write(state)
    ui.print_diagnostics(outcome.warnings, no_color=no_color)
    emit(f"{address} at {target} is now {outcome.record.remote_id}, tagged as managed by this state.\n")
    for note in outcome.notes:
        emit(f"  {note}\n")
    emit(
        "\nImport successful! Run `keyplan plan`: it shows no replacement for this key, only the metadata updates "
        "that would make it match the configuration, if any.\n"
    )


def discover(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="The provider address, e.g. aws.main.")],
    out: Annotated[Path | None, typer.Option("-o", "-out", "--out", help="Write the HCL to this file (which must not exist).")] = None,
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    no_color: NoColorOpt = False,
) -> None:
    """List the imported (BYOK) keys at a provider and write `key` blocks and import commands for them."""
    from keyplan.adopt import classify, render_discovery
    from keyplan.provider import ProviderError
    from keyplan.runtime import Session

    config = load(var, var_file, no_color=no_color)
    _require_provider(config, target)
    if out is not None and out.exists():
        raise DiagnosticsError.single(
            f"{out} already exists", "keyplan discover does not overwrite files. Choose a new file name."
        )
    state, _ = read_state(backend_for(config))
    with Session(config) as session:
        try:
            keys = session.provider(target).discover()
        except ProviderError as error:
            raise DiagnosticsError.single(f"Cannot list the keys of {target}: {error.summary}", error.detail) from None
    found = classify(keys, state, target)
    text = render_discovery(target, found, state, config, datetime.now(UTC))
    if out is None:
        emit(text)
        return
    write_atomically(out, text.encode())  # private: it lists the key inventory
    counts = {status: sum(1 for f in found if f.status == status) for status in ("managed", "tagged", "other", "unmanaged")}
    emit(
        f"Found {len(found)} imported key(s) at {target}: {counts['managed']} managed by this state, "
        f"{counts['tagged']} tagged by it but not in state, {counts['other']} managed by another state, "
        f"{counts['unmanaged']} not managed by keyplan. Wrote {out}.\n"
    )


def _require_provider(config: Config, target: str) -> None:
    if target not in config.providers:
        known = ", ".join(sorted(config.providers)) or "none"
        raise DiagnosticsError.single(
            f"No provider {target} in the configuration",
            f"Name a provider block by KIND.NAME, e.g. aws.main. Declared: {known}.",
        )


# ---------------------------------------------------------------------------------------------
# keyplan state rm | mv | pull | push
# ---------------------------------------------------------------------------------------------


def _existing_state(state: State, exists: bool) -> State:
    if not exists:
        raise DiagnosticsError.single("No state", "There is no state yet: nothing to change. Run `keyplan apply` first.")
    return state


def state_rm(
    addresses: Annotated[list[str], typer.Argument(metavar="ADDR...", help='Key addresses, e.g. key.app["payments"], or key.app for every instance.')],
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Stop managing keys: remove them from state (the remote keys stay as they are)."""
    from keyplan.state.edits import remove

    config = load([], [], no_color=True, validate=False)
    backend = backend_for(config)
    with state_lock(backend, "state rm", lock, lock_timeout):
        state = _existing_state(*read_state(backend))
        removed = remove(state, addresses)
        backend.write(state)
    for record in removed:
        where = ", ".join(f"{t} {r.remote_id}" for t, r in sorted(record.targets.items())) or "no remote keys"
        emit(f"Removed {record.address} ({where})\n")
    emit(
        f"\nRemoved {len(removed)} key(s) from state (serial {state.serial}; the previous copy is the .backup file).\n"
        "The remote keys still exist and keep their keyplan tags, so `keyplan drift` reports them as orphans.\n"
        "keyplan no longer holds their material (its handles in the key source are recorded nowhere else), so it\n"
        "cannot manage them again: remove their key blocks from the configuration too, or a plan creates new keys\n"
        "(or tries to adopt the tagged ones) with new material.\n"
    )


def state_mv(
    source: Annotated[str, typer.Argument(metavar="SRC", help="The address in state.")],
    destination: Annotated[str, typer.Argument(metavar="DST", help="The new address.")],
    retag: Annotated[
        str, typer.Option("-retag", "--retag", help="Rewrite the remote keys' keyplan-address tags (true/false).")
    ] = "true",
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Rename a key in state (e.g. after renaming its block) and retag its remote keys."""
    from keyplan.cli.main import _bool
    from keyplan.state.edits import apply_moves, plan_moves

    config = load([], [], no_color=True, validate=False)
    backend = backend_for(config)
    with state_lock(backend, "state mv", lock, lock_timeout):
        state = _existing_state(*read_state(backend))
        moves = plan_moves(state, source, destination)
        retagged: list[str] = []
        if _bool("retag", retag):
            for move in moves:
                retagged += _retag(config, state, move.record, move.destination)
        apply_moves(state, moves)
        backend.write(state)
    for move in moves:
        emit(f"Moved {move.source} to {move.destination}\n")
    if retagged:
        emit("Retagged keyplan-address on: " + ", ".join(retagged) + "\n")
    elif any(m.record.targets for m in moves):
        emit(
            "The remote keys still carry the old keyplan-address tag (-retag=false). The tag only matters when an "
            "apply is interrupted before it records a new key; run `keyplan state mv` with -retag=true later, or "
            "correct the tag at the cloud.\n"
        )
    emit(f"\nState written at serial {state.serial}.\n")


def _retag(config: Config, state: State, record: KeyRecord, destination: str) -> list[str]:
    """Rewrite keyplan-address on each remote key of `record`, leaving every other attribute
    as the cloud has it. Any failure stops the move before state changes."""
    from keyplan.adopt import as_is
    from keyplan.algorithms import KeyUsage, get_algorithm
    from keyplan.provider import KeySpec, ProviderError, UpdateKeyRequest
    from keyplan.runtime import Session

    algorithm = get_algorithm(record.algorithm)
    assert algorithm is not None, f"state holds an unknown algorithm {record.algorithm}"
    spec = KeySpec(address=destination, algorithm=algorithm, usage=KeyUsage(record.usage))
    done: list[str] = []
    with Session(config) as session:
        for target, target_record in sorted(record.targets.items()):
            if not target_record.exists_remotely or target_record.deletion_date is not None:
                continue
            if target not in config.providers:
                raise DiagnosticsError.single(
                    f"Cannot retag {record.address} at {target}: the provider is not in the configuration",
                    f"Its remote key {target_record.remote_id} carries the keyplan-address tag {record.address}. Put "
                    f"the provider block back, or pass -retag=false and correct the tag at the cloud.",
                )
            try:
                provider = session.provider(target)
                live = provider.describe(target_record.remote_id)
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
                raise DiagnosticsError.single(
                    f"Cannot retag {target_record.remote_id} at {target}: {error.summary}",
                    f"{error.detail} Nothing was moved in state. Fix the problem and run the command again, or pass "
                    "-retag=false.",
                ) from None
            done.append(f"{target} {live.remote_id}")
    return done


def state_pull() -> None:
    """Print the state as JSON (for backups, or to edit and push back)."""
    config = load([], [], no_color=True, validate=False)
    state = backend_for(config).read()
    if state is not None:
        sys.stdout.write(serialize_state(state).decode())


def state_push(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="A state file, or - for standard input.")],
    force: Annotated[
        bool, typer.Option("-force", "--force", help="Push even with a different lineage or a serial that is not newer.")
    ] = False,
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Replace the state with a file: refused for another lineage or an older copy unless -force."""
    from keyplan.state.edits import check_push

    origin = "standard input" if str(path) == "-" else str(path)
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise DiagnosticsError.single(f"Cannot read {origin}", f"{exc.strerror}. Name an existing state file.") from None
    except AttributeError:  # a text-only stdin (tests, some shells' redirections)
        data = sys.stdin.read().encode()
    incoming = parse_state(data, origin)
    config = load([], [], no_color=True, validate=False)
    backend = backend_for(config)
    with state_lock(backend, "state push", lock, lock_timeout):
        current = backend.read()
        check_push(current, incoming, force=force, origin=origin)
        backend.write(incoming)
    replaced = f" (replacing serial {current.serial} of lineage {current.lineage})" if current else ""
    emit(f"Pushed {origin}: the state is now lineage {incoming.lineage} at serial {incoming.serial}{replaced}.\n")
    if current is not None and force and current.lineage != incoming.lineage:
        emit(
            "The lineage changed: remote keys tagged keyplan-managed-by keyplan-" + current.lineage + " now belong "
            "to no state, and saved plans of the old lineage are refused.\n"
        )
