"""Review and adoption commands: `keyplan log` (the audit trail of every remote change applies
made), `keyplan import` and `keyplan discover` (bring existing imported keys under management).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from keyplan.cli import ui
from keyplan.cli.options import (
    LockOpt,
    LockTimeoutOpt,
    NoColorOpt,
    ThrottleTimeoutOpt,
    VarFileOpt,
    VarOpt,
    emit,
    load,
    lock_options,
    parse_duration,
)
from keyplan.diagnostics import DiagnosticsError
from keyplan.escaping import for_terminal
from keyplan.files import write_atomically

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
    from keyplan.apply.audit import DamagedAuditEntry, read_audit, verify_chain
    from keyplan.operations.audit import audit_trail

    config = load([], [], no_color=True, validate=False)
    trail = audit_trail(config)
    where = for_terminal(trail.origin)
    if verify:
        read, problems = verify_chain(trail)
        if problems:
            raise DiagnosticsError.single(
                "The audit trail was tampered with",
                f"{where} fails its hash-chain check:"
                + "".join(f"\n  - {f'entry {p.line}: ' if p.line else ''}{p.problem}" for p in problems)
                + "\nKeep the trail as evidence and compare it with a copy kept elsewhere.",
            )
        emit(f"The audit trail is intact: {read} entries, each chained to the one before.\n")
        return
    try:
        entries = read_audit(trail)
    except DamagedAuditEntry as exc:
        raise DiagnosticsError.single(
            "The audit log is damaged",
            f"{where} entry {exc.number} is not JSON. Each entry is one JSON object written by keyplan; an entry cut "
            "short by a crash can be deleted, the others are intact (`keyplan log -verify` checks the chain).",
        ) from None
    if count is not None:
        entries = entries[-count:]
    if json_output:
        emit(json.dumps(entries, indent=2) + "\n")
        return
    if not entries:
        emit(f"No audit entries yet. Every remote change an apply makes is recorded in {where}.\n")
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
    safe = [[for_terminal(cell) for cell in row] for row in rows]  # addresses and ids from config and clouds
    widths = [max(len(row[i]) for row in safe) for i in range(len(safe[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in safe]
    return "\n".join(line.rstrip() for line in lines) + "\n"


# ---------------------------------------------------------------------------------------------
# keyplan import / discover
# ---------------------------------------------------------------------------------------------


def import_key(
    address: Annotated[str, typer.Argument(metavar="ADDR", help='The key address in the configuration, e.g. key.app["payments"].')],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="The provider address, KIND.NAME as declared.")],
    remote_id: Annotated[str, typer.Argument(metavar="REMOTE_ID", help="The cloud's id of the key, as `keyplan discover` lists it.")],
    var: VarOpt = [],  # noqa: B006 - typer reads defaults
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    throttle_timeout: ThrottleTimeoutOpt = "30m",
    no_color: NoColorOpt = False,
) -> None:
    """Bring an existing imported key under management without replacing it."""
    from keyplan.addresses import canonical
    from keyplan.operations.adoption import import_key as adopt

    config = load(var, var_file, no_color=no_color)
    address = canonical(address)
    patience = parse_duration("throttle-timeout", throttle_timeout).total_seconds()
    outcome = adopt(config, address, target, remote_id, lock=lock_options(lock, lock_timeout), throttle_timeout=patience)
    ui.print_diagnostics(outcome.warnings, no_color=no_color)
    emit(for_terminal(f"{address} at {target} is now {outcome.record.remote_id}, tagged as managed by this state.") + "\n")
    for note in outcome.notes:
        emit(f"  {note}\n")
    emit(
        "\nImport successful! Run `keyplan plan`: it shows no replacement for this key, only the metadata updates "
        "that would make it match the configuration, if any.\n"
    )


def discover(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="The provider address, KIND.NAME as declared.")],
    out: Annotated[Path | None, typer.Option("-o", "-out", "--out", help="Write the HCL to this file (which must not exist).")] = None,
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    throttle_timeout: ThrottleTimeoutOpt = "30m",
    no_color: NoColorOpt = False,
) -> None:
    """List the imported (BYOK) keys at a provider and write `key` blocks and import commands for them."""
    from keyplan.discovery import render_discovery
    from keyplan.operations.adoption import discover as list_keys

    config = load(var, var_file, no_color=no_color)
    if out is not None and out.exists():
        raise DiagnosticsError.single(
            f"{out} already exists", "keyplan discover does not overwrite files. Choose a new file name."
        )
    found = list_keys(config, target, throttle_timeout=parse_duration("throttle-timeout", throttle_timeout).total_seconds())
    text = render_discovery(target, found.found, found.state, config, found.at)
    if out is None:
        emit(text)
        return
    write_atomically(out, text.encode())  # private: it lists the key inventory
    counts = {s: sum(1 for f in found.found if f.status == s) for s in ("managed", "tagged", "other", "unmanaged")}
    emit(
        f"Found {len(found.found)} imported key(s) at {target}: {counts['managed']} managed by this state, "
        f"{counts['tagged']} tagged by it but not in state, {counts['other']} managed by another state, "
        f"{counts['unmanaged']} not managed by keyplan. Wrote {out}.\n"
    )


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    app.command("log")(log)
    app.command("import")(import_key)
    app.command("discover")(discover)
