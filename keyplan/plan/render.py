"""Plans rendered for people and machines: terminal text (optionally coloured), JSON (the
plan document itself, documented by schemas/plan.schema.json) and Markdown for pull-request
comments. Renderers return strings; only the CLI prints.

Every value that came from configuration, state or a cloud (addresses with their for_each
keys, labels, descriptions, remote ids, reasons that quote them) goes through
`keyplan.escaping` for the medium: escaped control characters on a terminal, literal text in
Markdown. Colour codes are added after escaping, so only keyplan's own reach the terminal.
"""

from __future__ import annotations

import json
from collections import Counter

from keyplan.escaping import for_markdown, for_terminal, markdown_code, markdown_fence
from keyplan.plan.estimate import estimate_line
from keyplan.plan.model import ChangeAction, Drift, Plan, PlannedChange, change_kind, key_changes
from keyplan.policy.report import plan_section_markdown, plan_section_text

_COLOURS = {"+": "32", "-": "31", "~": "33", "±": "35", "!": "35"}


def _c(text: str, symbol: str, colour: bool) -> str:
    if not colour or symbol not in _COLOURS:
        return text
    return f"\x1b[{_COLOURS[symbol]}m{text}\x1b[0m"


def _bold(text: str, colour: bool) -> str:
    return f"\x1b[1m{text}\x1b[0m" if colour else text


def _map(values: dict[str, str]) -> str:
    if not values:
        return "{}"
    return "{ " + ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in sorted(values.items())) + " }"


def _value(field: str, value: object) -> str:
    if field == "labels" and isinstance(value, dict):
        return _map(value)
    return json.dumps(value)


def summary_counts(plan: Plan) -> Counter[str]:
    """How many keys will be created, adopted, imported, updated, rotated, deleted or forgotten:
    a key counts once per kind of change, however many targets it changes at (`key_changes`)."""
    return Counter(kind for kinds in key_changes(plan).values() for kind in kinds)


def target_counts(plan: Plan) -> Counter[str]:
    """The same per key and target (a key created at three targets counts three times)."""
    return Counter(kind for change in plan.changes if (kind := change_kind(change)) is not None)


def summary_line(plan: Plan) -> str:
    if plan.mode == "refresh-only":
        return f"Drift: {len(plan.drift)} change{'s' if len(plan.drift) != 1 else ''} outside keyplan."
    counts = summary_counts(plan)
    parts = [f"{counts['create']} to create"]
    if counts["adopt"]:
        parts.append(f"{counts['adopt']} to adopt")
    parts += [
        f"{counts['import']} to import",
        f"{counts['update']} to update",
        f"{counts['rotate']} to rotate",
        f"{counts['delete']} to delete",
    ]
    if counts["forget"]:
        parts.append(f"{counts['forget']} to forget")
    changes = sum(target_counts(plan).values())
    per_key = f" Keys are counted once; {changes} changes across their targets." if changes > sum(counts.values()) else ""
    return "Plan: " + ", ".join(parts) + "." + per_key


def _heading(change: PlannedChange) -> str:
    where = f"{change.address} @ {change.target}" if change.target else change.address
    verbs = {
        ChangeAction.CREATE: "will be created",
        ChangeAction.ADOPT: "will be adopted",
        ChangeAction.IMPORT: "will have material imported",
        ChangeAction.REIMPORT: "will have its material imported again",
        ChangeAction.ROTATE: "will be rotated",
        ChangeAction.UPDATE: "will be updated in place",
        ChangeAction.RESTORE: "will have its deletion cancelled",
        ChangeAction.DELETE: "will be scheduled for deletion",
        ChangeAction.FORGET: "will be removed from state",
    }
    return for_terminal(f"# {where} {verbs[change.actions[0]]}")


def _change_text(plan: Plan, change: PlannedChange, colour: bool) -> list[str]:
    symbol = change.symbol
    where = f"{change.address} @ {change.target}" if change.target else change.address
    lines = [f"  {_bold(_heading(change), colour)}", "  " + _c(for_terminal(f"{symbol} {where}"), symbol, colour)]
    planned = plan.keys.get(change.address)
    pad = "      "
    details: list[str] = []
    details.append(f"{pad}actions:     {', '.join(a.value for a in change.actions)}")
    details.append(f"{pad}reason:      {change.reason}")
    if change.remote_id:
        details.append(f"{pad}remote id:   {change.remote_id}")
    if planned is not None and ChangeAction.DELETE not in change.actions:
        details.append(f"{pad}algorithm:   {planned.spec.algorithm.name} ({planned.spec.usage.value}), source {planned.source}")
    if change.material_version is not None:
        details.append(f"{pad}material:    version {change.material_version}")
    if change.wrap is not None:
        where_wrapped = "inside the HSM" if change.wrap.in_hardware else "in the keystore"
        details.append(
            f"{pad}wrap:        {change.wrap.method.value} under RSA-{change.wrap.wrapping_key_bits}, {where_wrapped}"
        )
    before, after = change.before, change.after
    if after is not None:
        for field in ("labels", "aliases", "description", "enabled"):
            new = getattr(after, field)
            old = getattr(before, field) if before is not None else None
            if before is None:
                if new not in ({}, [], None):
                    details.append(f"{pad}{field + ':':<13}{_value(field, new)}")
            elif old != new:
                details.append(f"{pad}{field + ':':<13}{_value(field, old)} -> {_value(field, new)}")
    for note in change.notes:
        details.append(f"{pad}note:        {note}")
    return lines + [for_terminal(line) for line in details]


def _drift_text(drift: Drift, colour: bool) -> str:
    detail = ""
    if drift.recorded or drift.live:
        detail = f" (keyplan: {json.dumps(drift.recorded, sort_keys=True)}, cloud: {json.dumps(drift.live, sort_keys=True)})"
    return "  " + _c(for_terminal(f"! {drift.address} @ {drift.target}: {drift.summary}"), "!", colour) + for_terminal(detail)


# Above this many changes the text plan summarises them by key block, target and action; every
# change is still in `plan -json` and `keyplan show PLANFILE`.
SUMMARY_ABOVE = 200


def _block(address: str) -> str:
    """A key's block: its address without the for_each key (`key.app["x"]` -> `key.app`)."""
    return address.split("[", 1)[0]


# The Markdown of a plan is a review comment, which holds at most 65,536 characters (GitHub's
# limit): a detail section per change up to this many changes, a table row per change up to
# SUMMARY_ABOVE, and above that the summary by key block.
MARKDOWN_DETAILS_UP_TO = 50


def _groups(changes: list[PlannedChange]) -> tuple[Counter[tuple[str, str, str]], dict[tuple[str, str, str], str]]:
    """Changes counted by key block, target and action, with each group's plan symbol."""
    groups: Counter[tuple[str, str, str]] = Counter()
    symbols: dict[tuple[str, str, str], str] = {}
    for change in changes:
        group = (_block(change.address), change.target or "", change_kind(change) or "update")
        groups[group] += 1
        symbols.setdefault(group, change.symbol)
    return groups, symbols


def _summary_text(changes: list[PlannedChange], colour: bool) -> list[str]:
    groups, symbols = _groups(changes)
    lines = [
        f"keyplan will perform {len(changes):,} changes, summarised by key block (every change is listed by "
        "`keyplan plan -json`, and by `keyplan show` of a plan saved with -out):",
        "",
    ]
    for group, count in sorted(groups.items()):
        block, target, category = group
        where = f"{block} @ {target}" if target else block
        lines.append("  " + _c(for_terminal(f"{symbols[group]} {where}: {count:,} to {category}"), symbols[group], colour))
    return lines


def render_text(plan: Plan, *, colour: bool = False, full: bool = False) -> str:
    """The plan for a terminal; above `SUMMARY_ABOVE` changes a summary by key block, unless `full`."""
    out: list[str] = [section] if (section := plan_section_text(plan.findings, colour=colour)) else []
    if plan.drift:
        out.append(_bold("Changed outside keyplan (drift):", colour))
        out.extend(_drift_text(d, colour) for d in plan.drift)
        out.append("")
    changes = [c for c in plan.changes if ChangeAction.NOOP not in c.actions]
    if plan.mode == "refresh-only":
        if not plan.drift:
            out.append("No changes. The clouds match the state.")
        else:
            out.append("Applying this refresh-only plan records the cloud's current values in state; it changes no key.")
            out.append("")
            out.append(summary_line(plan))
        return "\n".join(out) + "\n"
    if not changes:
        out.append("No changes. Your keys match the configuration.")
        return "\n".join(out) + "\n"
    if len(changes) > SUMMARY_ABOVE and not full:
        out.extend(_summary_text(changes, colour))
        out.append("")
    else:
        out.append("keyplan will perform the following actions:")
        out.append("")
        for change in changes:
            out.extend(_change_text(plan, change, colour))
            out.append("")
    out.append(_bold(summary_line(plan), colour))
    if plan.estimate is not None:
        out.append(for_terminal(estimate_line(plan.estimate)))
    return "\n".join(out) + "\n"


def render_json(plan: Plan) -> str:
    document = plan.model_dump(mode="json")
    document["summary"] = dict(summary_counts(plan))
    document["summary_targets"] = dict(target_counts(plan))
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def render_markdown(plan: Plan) -> str:
    lines = [f"### keyplan {'drift report' if plan.mode == 'refresh-only' else 'plan'}", ""]
    lines.append(f"**{summary_line(plan)}**")
    if plan.estimate is not None:
        lines.append("")
        lines.append(for_markdown(estimate_line(plan.estimate)))
    lines.append("")
    lines.append(
        f"State lineage {markdown_code(plan.prior.lineage[:12])} serial {plan.prior.serial} · plan digest "
        f"{markdown_code(plan.digest[:19] or 'unsaved')} · made {plan.created_at.isoformat(timespec='seconds')}"
    )
    lines += plan_section_markdown(plan.findings)
    if len(plan.drift) > SUMMARY_ABOVE:
        kinds = Counter((_block(d.address), d.target, d.kind.value) for d in plan.drift)
        lines += ["", "#### Changed outside keyplan", "", "| key block | target | drift | keys |", "|---|---|---|---:|"]
        lines += [
            f"| {markdown_code(block)} | {markdown_code(target)} | {for_markdown(kind)} | {count:,} |"
            for (block, target, kind), count in sorted(kinds.items())
        ]
    elif plan.drift:
        lines += ["", "#### Changed outside keyplan", "", "| key | target | drift |", "|---|---|---|"]
        lines += [f"| {markdown_code(d.address)} | {markdown_code(d.target)} | {for_markdown(d.summary)} |" for d in plan.drift]
    changes = [c for c in plan.changes if ChangeAction.NOOP not in c.actions]
    if len(changes) > SUMMARY_ABOVE:
        lines += _summary_markdown(changes)
    elif changes:
        lines += ["", "| | key | target | actions | wrap |", "|---|---|---|---|---|"]
        for c in changes:
            wrap = f"{c.wrap.method.value} / RSA-{c.wrap.wrapping_key_bits}" if c.wrap else ""
            lines.append(
                f"| {c.symbol} | {markdown_code(c.address)} | {markdown_code(c.target or '')} | "
                f"{', '.join(a.value for a in c.actions)} | {wrap} |"
            )
        for c in changes if len(changes) <= MARKDOWN_DETAILS_UP_TO else []:
            where = f"{c.address} @ {c.target}" if c.target else c.address
            # _change_text escapes every value for a terminal line: no value can start a line of
            # its own, and the fence is longer than any backtick run in the body.
            body = "\n".join(line.strip() for line in _change_text(plan, c, False)[2:])
            fence = markdown_fence(body)
            lines += ["", f"<details><summary>{markdown_code(where)}</summary>", "", fence, body, fence, "", "</details>"]
        if len(changes) > MARKDOWN_DETAILS_UP_TO:
            lines += ["", f"Each change in detail: `keyplan show PLANFILE` ({len(changes):,} changes)."]
    elif plan.mode != "refresh-only":
        lines += ["", "No changes."]
    return "\n".join(lines) + "\n"


def _summary_markdown(changes: list[PlannedChange]) -> list[str]:
    groups, symbols = _groups(changes)
    lines = [
        "",
        f"{len(changes):,} changes, summarised by key block; each one is listed by `keyplan show PLANFILE` "
        "and `keyplan show -json PLANFILE`.",
        "",
        "| | key block | target | action | keys |",
        "|---|---|---|---|---:|",
    ]
    for (block, target, category), count in sorted(groups.items()):
        symbol = symbols[(block, target, category)]
        lines.append(f"| {symbol} | {markdown_code(block)} | {markdown_code(target)} | {category} | {count:,} |")
    return lines
