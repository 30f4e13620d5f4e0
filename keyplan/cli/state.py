"""`keyplan show`, `keyplan state list|show|rm|mv|pull|push` and `force-unlock`: parse flags,
call a state operation, render."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from keyplan.cli import ui
from keyplan.cli.options import (
    Exit,
    LockOpt,
    LockTimeoutOpt,
    NoColorOpt,
    emit,
    from_working_dir,
    load,
    lock_options,
    parse_bool,
)
from keyplan.diagnostics import DiagnosticsError
from keyplan.escaping import for_terminal
from keyplan.state.model import State


def show(
    planfile: Annotated[Path | None, typer.Argument(help="A saved plan; without it, the state.")] = None,
    json_output: Annotated[bool, typer.Option("-json", "--json")] = False,
    markdown: Annotated[bool, typer.Option("-markdown", "--markdown", help="Markdown for a pull-request comment.")] = False,
    no_color: NoColorOpt = False,
) -> None:
    """Show a saved plan (text, JSON or Markdown) or the current state."""
    from keyplan.operations.state import current

    if planfile is not None:
        from keyplan.approvals import approvals_text, read_approvals
        from keyplan.plan.planfile import load_plan
        from keyplan.plan.render import render_json, render_markdown, render_text

        saved = load_plan(from_working_dir(planfile))
        approvals = read_approvals(from_working_dir(planfile))
        if json_output:
            document = json.loads(render_json(saved))
            document["approvals"] = [a.model_dump(mode="json") for a in approvals]
            emit(json.dumps(document, indent=2, sort_keys=True) + "\n")
        elif markdown:
            emit(render_markdown(saved) + approvals_text(approvals, markdown=True))
        else:
            emit(render_text(saved, colour=ui.use_colour(sys.stdout, no_color), full=True) + approvals_text(approvals))
        return
    state = current(load([], [], no_color=no_color, validate=False))
    if state is None:
        emit("No state.\n")
        return
    if json_output:
        emit(json.dumps(state.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
        return
    for address in sorted(state.keys):
        emit(render_key(state, address))


def render_key(state: State, address: str) -> str:
    record = state.keys[address]
    lines = [f"# {address}", f"  algorithm: {record.algorithm} ({record.usage}), source {record.source}"]
    for material in record.materials:
        lines.append(
            f"  material v{material.version}: {material.fingerprint or 'fingerprint recomputed at the next apply'} "
            f"(created {material.created_at.isoformat(timespec='seconds')})"
        )
    for target, target_record in sorted(record.targets.items()):
        lines.append(f"  @ {target}: {target_record.remote_id}")
        current = target_record.current_material_version
        lines.append(f"      current material: v{current}" if current else "      current material: none")
        for imported in target_record.imports:
            expires = f", expires {imported.expires_at.isoformat(timespec='seconds')}" if imported.expires_at else ""
            lines.append(f"      imported v{imported.material_version} as {imported.remote_version_id}{expires}")
        if target_record.labels:
            lines.append("      labels: " + ", ".join(f"{k}={v}" for k, v in sorted(target_record.labels.items())))
        if target_record.aliases:
            lines.append("      aliases: " + ", ".join(target_record.aliases))
        lines.append(f"      enabled: {str(target_record.enabled).lower()}")
        if target_record.deletion_date:
            lines.append(f"      deletion scheduled: {target_record.deletion_date.isoformat(timespec='seconds')}")
    return "\n".join(for_terminal(line) for line in lines) + "\n\n"


def state_list() -> None:
    """List the key addresses in state."""
    from keyplan.operations.state import current

    state = current(load([], [], no_color=True, validate=False))
    for address in sorted(state.keys if state else {}):
        emit(for_terminal(address) + "\n")


def state_show(address: Annotated[str, typer.Argument(help="A key address, e.g. key.app[\"payments-prod\"].")]) -> None:
    """Show one key's record in state."""
    from keyplan.operations.state import key_record

    state, record = key_record(load([], [], no_color=True, validate=False), address)
    emit(render_key(state, record.address))


def state_rm(
    addresses: Annotated[list[str], typer.Argument(metavar="ADDR...", help='Key addresses, e.g. key.app["payments"], or key.app for every instance.')],
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Stop managing keys: remove them from state (the remote keys stay as they are)."""
    from keyplan.operations.state import remove

    config = load([], [], no_color=True, validate=False)
    state, removed = remove(config, addresses, lock=lock_options(lock, lock_timeout))
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
    from keyplan.operations.state import move

    config = load([], [], no_color=True, validate=False)
    locking = lock_options(lock, lock_timeout)
    outcome = move(config, source, destination, retag=parse_bool("retag", retag), lock=locking)
    for moved in outcome.moves:
        emit(f"Moved {moved.source} to {moved.destination}\n")
    if outcome.retagged:
        emit("Retagged keyplan-address on: " + ", ".join(outcome.retagged) + "\n")
    elif any(m.record.targets for m in outcome.moves):
        emit(
            "The remote keys still carry the old keyplan-address tag (-retag=false). The tag only matters when an "
            "apply is interrupted before it records a new key; run `keyplan state mv` with -retag=true later, or "
            "correct the tag at the cloud.\n"
        )
    emit(f"\nState written at serial {outcome.state.serial}.\n")


def state_pull() -> None:
    """Print the state as JSON (for backups, or to edit and push back)."""
    from keyplan.operations.state import current
    from keyplan.state.local import serialize_state

    state = current(load([], [], no_color=True, validate=False))
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
    from keyplan.files import read_file
    from keyplan.operations.state import push
    from keyplan.state.local import parse_state

    origin = "standard input" if str(path) == "-" else str(path)
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else read_file(path)
    except OSError as exc:
        raise DiagnosticsError.single(f"Cannot read {origin}", f"{exc.strerror}. Name an existing state file.") from None
    except AttributeError:  # a text-only stdin (tests, some shells' redirections)
        data = sys.stdin.read().encode()
    incoming = parse_state(data, origin)
    config = load([], [], no_color=True, validate=False)
    current = push(config, incoming, force=force, origin=origin, lock=lock_options(lock, lock_timeout))
    replaced = f" (replacing serial {current.serial} of lineage {current.lineage})" if current else ""
    emit(f"Pushed {origin}: the state is now lineage {incoming.lineage} at serial {incoming.serial}{replaced}.\n")
    if current is not None and force and current.lineage != incoming.lineage:
        emit(
            "The lineage changed: remote keys tagged keyplan-managed-by keyplan-" + current.lineage + " now belong "
            "to no state, and saved plans of the old lineage are refused.\n"
        )


def force_unlock(
    lock_id: Annotated[str, typer.Argument(metavar="ID", help="The lock ID shown in the lock error.")],
    force: Annotated[bool, typer.Option("-force", "--force", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a state lock left by an operation that is no longer running."""
    from keyplan.operations.state import force_unlock as unlock

    config = load([], [], no_color=True, validate=False)
    if not force:
        if not sys.stdin.isatty():
            raise DiagnosticsError.single(
                "No terminal to confirm force-unlock", "Pass -force to remove the lock without confirmation."
            )
        if not ui.confirm(f"Remove the lock {lock_id}? Only 'yes' will be accepted.\n  Enter a value: "):
            raise Exit(1)
    held = unlock(config, lock_id)
    emit(f"keyplan state has been unlocked (the lock was held by {held.who}@{held.host} for {held.operation}).\n")


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    app.command("show")(show)
    state_app.command("list")(state_list)
    state_app.command("show")(state_show)
    state_app.command("rm")(state_rm)
    state_app.command("mv")(state_mv)
    state_app.command("pull")(state_pull)
    state_app.command("push")(state_push)
    app.command("force-unlock")(force_unlock)
