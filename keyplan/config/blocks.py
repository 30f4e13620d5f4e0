"""The `keyplan` block (its `state` backend and `approvals`) and the `source` and `provider`
blocks: their attributes evaluated and their shape checked, with diagnostics for each problem.
A plugin block's own settings are checked later, by the plugin's settings model.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from keyplan.approvals import CHANGE_KINDS, ApprovalPolicy
from keyplan.config.durations import DurationError, parse_duration
from keyplan.config.expressions import Evaluator, Scope
from keyplan.config.failures import EvaluationError
from keyplan.config.model import PluginBlock, StateBackendConfig
from keyplan.config.suggestions import did_you_mean
from keyplan.config.syntax import Block, Body
from keyplan.config.values import plain
from keyplan.diagnostics import Diagnostics, SourceRange

DEFAULT_STATE_PATH = "keyplan.kpstate.json"  # as the local backend's default


def state_backend(blocks: list[Block], scope: Scope, diagnostics: Diagnostics) -> StateBackendConfig:
    default = StateBackendConfig(kind="local", attributes={"path": DEFAULT_STATE_PATH})
    if not blocks:
        return default
    block = blocks[0]
    for attribute in block.body.attributes.values():
        diagnostics.error(
            "Unsupported argument",
            f"The keyplan block holds `state` and `approvals` blocks, not `{attribute.name}`. Remove it.",
            range=attribute.name_range,
        )
    states = [b for b in block.body.blocks if b.type == "state"]
    for nested in block.body.blocks:
        if nested.type not in ("state", "approvals"):
            diagnostics.error(
                "Unsupported block type",
                f"The keyplan block holds `state` and `approvals` blocks, not `{nested.type}`."
                f"{did_you_mean(nested.type, ['state', 'approvals'])} Remove or rename it.",
                range=nested.range,
            )
    if not states:
        return default
    if len(states) > 1:
        diagnostics.error(
            "Duplicate state block",
            f"The state backend is already configured at {states[0].range}. Keep one state block.",
            range=states[1].range,
        )
    state = states[0]
    if len(state.labels) != 1:
        diagnostics.error(
            "Wrong number of block labels",
            'A state block has one label, the backend kind. Write it as `state "local" { path = "..." }`.',
            range=state.range,
        )
        return default
    attributes, ranges, sensitive = _evaluate_attributes(state.body, replace(scope, where="in the state block"), diagnostics)
    if state.labels[0] == "local":
        attributes.setdefault("path", DEFAULT_STATE_PATH)
    return StateBackendConfig(
        kind=state.labels[0], attributes=attributes, range=state.label_ranges[0], sensitive=sensitive, attribute_ranges=ranges
    )


def approvals_policy(blocks: list[Block], scope: Scope, diagnostics: Diagnostics) -> ApprovalPolicy | None:
    """The `approvals` block inside the keyplan block: who may approve plans, and how many must."""
    found = [nested for block in blocks[:1] for nested in block.body.blocks if nested.type == "approvals"]
    if not found:
        return None
    block = found[0]
    if len(found) > 1:
        diagnostics.error(
            "Duplicate approvals block", f"Approvals are already configured at {found[0].range}. Keep one block.",
            range=found[1].range,
        )
    values, ranges, _ = _evaluate_attributes(block.body, replace(scope, where="in the approvals block"), diagnostics)
    try:
        if "valid_for" in values:
            values["valid_for"] = _approval_validity(str(values["valid_for"]))
        policy = ApprovalPolicy.model_validate(values)
        for signer in policy.signers:
            signer.key()
    except (ValidationError, ValueError) as exc:
        detail = exc.errors()[0] if isinstance(exc, ValidationError) else None
        where = ".".join(str(p) for p in detail["loc"]) if detail else "public_key"
        diagnostics.error(
            "Invalid approvals block",
            f"{where}: {detail['msg'] if detail else exc}. The block takes signers = [{{ name = \"...\", "
            'public_key = "ed25519:..." }, ...], required = N, required_for = { delete = N, ... } and valid_for.',
            range=ranges.get(where.split(".")[0], block.range),
        )
        return None
    names = [s.name for s in policy.signers]
    problems = []
    if len(set(names)) != len(names) or len({s.public_key for s in policy.signers}) != len(names):
        problems.append("each signer is listed once, with a key of its own")
    if not 1 <= policy.required <= len(names):
        problems.append(f"required must be between 1 and the number of signers ({len(names)})")
    for kind, count in policy.required_for.items():
        if kind not in CHANGE_KINDS:
            problems.append(f"required_for names {kind!r}; the kinds are {', '.join(CHANGE_KINDS)}")
        elif not 1 <= count <= len(names):
            problems.append(f"required_for.{kind} must be between 1 and the number of signers ({len(names)})")
    for problem in problems:
        diagnostics.error("Invalid approvals block", problem[0].upper() + problem[1:] + ".", range=block.range)
    return None if problems else policy


def _approval_validity(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise ValueError(f"valid_for: {exc}") from None


def plugin_block(block: Block, scope: Scope, diagnostics: Diagnostics) -> PluginBlock:
    kind, name = block.labels
    for nested in block.body.blocks:
        diagnostics.error(
            "Unsupported block",
            f"{block.type.capitalize()} settings are arguments (NAME = VALUE), so the `{nested.type}` block is not "
            f"expected here. Write it as `{nested.type} = {{ ... }}` if the setting takes a map.",
            range=nested.range,
        )
    where = f"in the {block.type} block {kind}.{name}"
    attributes, ranges, sensitive = _evaluate_attributes(block.body, replace(scope, where=where), diagnostics)
    return PluginBlock(
        kind=kind,
        name=name,
        address=f"{kind}.{name}",
        attributes=attributes,
        range=block.label_ranges[0],
        attribute_ranges=ranges,
        sensitive=sensitive,
    )


def _evaluate_attributes(
    body: Body, scope: Scope, diagnostics: Diagnostics
) -> tuple[dict[str, Any], dict[str, SourceRange], frozenset[str]]:
    """Values, ranges, and the names of the attributes derived from a sensitive value (allowed
    in settings, which stay on this machine, but never digested into a plan file)."""
    evaluator = Evaluator(scope)
    values: dict[str, Any] = {}
    ranges: dict[str, SourceRange] = {}
    sensitive: set[str] = set()
    for name, attribute in body.attributes.items():
        # The whole `name = value` span: plugin settings errors are about the argument as a whole
        # (unknown names, values out of range), so they point at its name.
        ranges[name] = attribute.range
        try:
            value, derived = evaluator.evaluate_marked(attribute.expr)
        except EvaluationError as exc:
            diagnostics.extend(exc.diagnostics)
            continue
        values[name] = plain(value)
        if derived:
            sensitive.add(name)
    return values, ranges, frozenset(sensitive)


