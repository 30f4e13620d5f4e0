"""Loading a configuration directory: every `*.kp.hcl` file is parsed, its blocks sorted by
type, variables resolved, locals evaluated in dependency order, and each `key` block expanded
over its for_each into `KeyConfig` instances.

Problems become diagnostics and loading goes on, so one run reports all of them; the
`Config` is only returned when there is no error, because a configuration with a key left
out would read as a request to destroy that key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from keyplan.approvals import CHANGE_KINDS, ApprovalPolicy
from keyplan.config.durations import DurationError, parse_duration
from keyplan.config.expressions import FAILED, EvaluationError, Evaluator, Scope, references, show
from keyplan.config.model import Config, KeyConfig, PluginBlock, StateBackendConfig, VariableValue
from keyplan.config.suggestions import did_you_mean
from keyplan.config.syntax import Attribute, Block, Body, Expr, ObjectExpr, TupleExpr, parse_file, quoted
from keyplan.config.values import SetValue, canonical_json, plain, type_name
from keyplan.config.variables import declare_variable, resolve_variables
from keyplan.diagnostics import Diagnostic, Diagnostics, DiagnosticsError, SourceRange
from keyplan.policy.model import Policy

FILE_SUFFIX = ".kp.hcl"
DEFAULT_STATE_PATH = "keyplan.kpstate.json"

_NAME = re.compile(r"^[^\W\d][\w-]*$")  # as HCL identifiers: a letter or underscore, then letters, digits, _ and -
_BLOCK_LABELS = {"keyplan": (), "variable": ("name",), "locals": (), "source": ("kind", "name"),
                 "provider": ("kind", "name"), "key": ("name",), "policy": ()}  # fmt: skip
KEY_ATTRIBUTES = ("for_each", "algorithm", "usage", "source", "targets", "labels", "description", "aliases", "enabled")
KEY_REQUIRED = ("algorithm", "source", "targets")
KEY_BLOCKS: dict[str, tuple[str, ...]] = {
    "expiry": ("after", "never"),
    "rotation": ("every",),
    "lifecycle": ("prevent_destroy",),
}


@dataclass
class _Declarations:
    """The top-level blocks of all files, sorted by type, with duplicates already reported."""

    keyplan: list[Block] = field(default_factory=list)
    variables: dict[str, Block] = field(default_factory=dict)
    locals: dict[str, Attribute] = field(default_factory=dict)
    sources: dict[str, Block] = field(default_factory=dict)
    providers: dict[str, Block] = field(default_factory=dict)
    keys: dict[str, Block] = field(default_factory=dict)
    policy: list[Block] = field(default_factory=list)


def load_config(
    directory: Path,
    *,
    var_args: list[str] = [],  # noqa: B006 - never mutated; the signature is the documented entry point
    var_files: list[Path] = [],  # noqa: B006
    environ: Mapping[str, str] = os.environ,
    planned_values: Mapping[str, object] | None = None,
    workspace: str | None = None,
) -> tuple[Config | None, Diagnostics]:
    """Read, evaluate and check the shape of every `*.kp.hcl` file in `directory` (in name
    order). Returns the configuration, or None when any error was found, and every diagnostic.
    Variables come from `var_args` (in order, strongest), then `var_files` (in order), then
    `planned_values` (the values a saved plan recorded), then `KEYPLAN_VAR_<name>` in `environ`,
    then defaults."""
    diagnostics = Diagnostics()
    directory = Path(directory)
    paths = sorted(p for p in directory.glob(f"*{FILE_SUFFIX}") if p.is_file())
    if not paths:
        diagnostics.error(
            "No configuration files",
            f"The directory {directory} holds no *{FILE_SUFFIX} files. Run keyplan in the directory that holds "
            "the configuration, or create a main.kp.hcl there.",
        )
        return None, diagnostics
    contents = {path.name: path.read_bytes() for path in paths}
    bodies = [body for name, data in contents.items() if (body := _parse(name, data, diagnostics)) is not None]
    declarations = _collect(bodies, diagnostics)

    variable_declarations = {
        name: declaration
        for name, block in declarations.variables.items()
        if (declaration := declare_variable(block, diagnostics)) is not None
    }
    resolved = resolve_variables(
        variable_declarations, var_args, var_files, environ, diagnostics, planned_values=planned_values or {}
    )
    variable_values = dict(resolved.values)
    for name in declarations.variables:
        variable_values.setdefault(name, FAILED)  # declared, but the block itself was invalid
    scope = Scope(
        variables=variable_values,
        sources=frozenset(declarations.sources),
        providers=frozenset(declarations.providers),
        sensitive=set(resolved.sensitive_leaves),
        sensitive_variables=resolved.sensitive_names,
        workspace=workspace if workspace is not None else _current_workspace(directory, environ, diagnostics),
    )
    local_values, sensitive_locals = _evaluate_locals(declarations.locals, scope, diagnostics)
    scope = replace(scope, locals=local_values, sensitive_locals=sensitive_locals)

    state = _state_backend(declarations.keyplan, scope, diagnostics)
    approvals = _approvals(declarations.keyplan, scope, diagnostics)
    sources = {address: _plugin_block(block, scope, diagnostics) for address, block in declarations.sources.items()}
    providers = {address: _plugin_block(block, scope, diagnostics) for address, block in declarations.providers.items()}
    keys: dict[str, KeyConfig] = {}
    for block in declarations.keys.values():
        for key in _expand_key(block, scope, diagnostics):
            keys[key.address] = key
    policy = _policy(declarations.policy, scope, keys, diagnostics)

    final = _finish(diagnostics, frozenset(scope.sensitive))
    if final.has_errors():
        return None, final
    variables = {
        name: VariableValue(name=name, value=plain(variable_values[name]), sensitive=declaration.sensitive)
        for name, declaration in variable_declarations.items()
    }
    config = Config(
        directory=str(directory),
        files=tuple(contents),
        digest="",
        state=state,
        sources=sources,
        providers=providers,
        keys=keys,
        variables=variables,
        policy=policy,
        approvals=approvals,
    )
    return config.model_copy(update={"digest": configuration_digest(config)}), final


# ---------------------------------------------------------------------------------------------
# Files and top-level blocks
# ---------------------------------------------------------------------------------------------


def _parse(filename: str, data: bytes, diagnostics: Diagnostics) -> Body | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        diagnostics.error(
            "Invalid file encoding",
            "Configuration files must be UTF-8 text; this byte is not valid UTF-8. Save the file as UTF-8.",
            range=SourceRange(filename=filename, line=line),
        )
        return None
    return parse_file(text.removeprefix("\ufeff"), filename, diagnostics)


def _collect(bodies: list[Body], diagnostics: Diagnostics) -> _Declarations:
    found = _Declarations()
    first_seen: dict[str, SourceRange] = {}
    for body in bodies:
        for attribute in body.attributes.values():
            diagnostics.error(
                "Unexpected argument",
                f"Arguments such as `{attribute.name}` belong inside a block; the top level of a file holds only "
                "keyplan, variable, locals, source, provider, key and policy blocks. Move it into a block.",
                range=attribute.name_range,
            )
        for block in body.blocks:
            if not _check_labels(block, diagnostics):
                continue
            identity = " ".join([block.type, *block.labels])
            if block.type not in ("locals", "keyplan") and identity in first_seen:
                diagnostics.error(
                    f"Duplicate {block.type} block",
                    f"A {block.type} block {' '.join(quoted(label) for label in block.labels)} is already declared at "
                    f"{first_seen[identity]}. Each {block.type} needs a unique name; rename or remove one.",
                    range=block.label_ranges[-1] if block.label_ranges else block.range,
                )
                continue
            first_seen.setdefault(identity, block.range)
            _file_block(found, block, diagnostics)
    if len(found.keyplan) > 1:
        diagnostics.error(
            "Duplicate keyplan block",
            f"The keyplan block is already declared at {found.keyplan[0].range}. Merge the two into one.",
            range=found.keyplan[1].range,
        )
    return found


def _check_labels(block: Block, diagnostics: Diagnostics) -> bool:
    expected = _BLOCK_LABELS.get(block.type)
    if expected is None:
        diagnostics.error(
            "Unsupported block type",
            f"keyplan has no `{block.type}` block.{did_you_mean(block.type, _BLOCK_LABELS)} The top level holds "
            "keyplan, variable, locals, source, provider, key and policy blocks.",
            range=block.range,
        )
        return False
    if len(block.labels) != len(expected):
        shape = " ".join([block.type, *(f'"{label.upper()}"' for label in expected), "{ ... }"])
        diagnostics.error(
            "Wrong number of block labels",
            f"A {block.type} block has {len(expected)} label{'s' if len(expected) != 1 else ''} "
            f"({', '.join(expected) or 'none'}), and this one has {len(block.labels)}. Write it as `{shape}`.",
            range=block.range,
        )
        return False
    for label, range in zip(block.labels, block.label_ranges, strict=True):
        if not _NAME.match(label):
            diagnostics.error(
                "Invalid name",
                f"The name {quoted(label)} is not valid: names start with a letter or underscore and contain only "
                "letters, digits, underscores and dashes. Rename it.",
                range=range,
            )
            return False
    return True


def _file_block(found: _Declarations, block: Block, diagnostics: Diagnostics) -> None:
    if block.type == "keyplan":
        found.keyplan.append(block)
    elif block.type == "variable":
        found.variables[block.labels[0]] = block
    elif block.type == "source":
        found.sources[".".join(block.labels)] = block
    elif block.type == "provider":
        found.providers[".".join(block.labels)] = block
    elif block.type == "key":
        found.keys[block.labels[0]] = block
    elif block.type == "policy":
        found.policy.append(block)
    elif block.type == "locals":
        for nested in block.body.blocks:
            diagnostics.error(
                "Unsupported block", "A locals block holds only NAME = VALUE assignments. Remove the block.",
                range=nested.range,
            )  # fmt: skip
        for name, attribute in block.body.attributes.items():
            if name in found.locals:
                diagnostics.error(
                    "Duplicate local value",
                    f"The local value {quoted(name)} is already defined at {found.locals[name].name_range}. Each "
                    "local needs a unique name; rename or remove one.",
                    range=attribute.name_range,
                )
                continue
            found.locals[name] = attribute


# ---------------------------------------------------------------------------------------------
# Locals
# ---------------------------------------------------------------------------------------------


def _evaluate_locals(
    declared: dict[str, Attribute], scope: Scope, diagnostics: Diagnostics
) -> tuple[dict[str, Any], frozenset[str]]:
    """Every local's value (FAILED where it could not be computed) and the names of the locals
    derived from a sensitive value."""
    dependencies = {
        name: [ref for ref, _ in references(attribute.expr, "local") if ref in declared]
        for name, attribute in declared.items()
    }
    order, cycles = _dependency_order(dependencies)
    values: dict[str, Any] = {}
    sensitive: set[str] = set()
    for cycle in cycles:
        path = " -> ".join(f"local.{name}" for name in cycle)
        diagnostics.error(
            "Cycle in local values",
            f"These local values refer to each other in a loop: {path}. A local cannot depend on itself; "
            "break the cycle by computing one of them from something else.",
            range=declared[cycle[0]].name_range,
        )
        values.update(dict.fromkeys(cycle, FAILED))
    for name in order:
        if name in values:
            continue
        evaluator = Evaluator(
            replace(scope, locals=values, sensitive_locals=frozenset(sensitive), where=f"in local.{name}")
        )
        try:
            values[name], derived = evaluator.evaluate_marked(declared[name].expr)
        except EvaluationError as exc:
            _report(exc, diagnostics)
            values[name] = FAILED
            continue
        if derived:
            sensitive.add(name)
    # A local that depends on a failed one is itself unknown; references to it stay silent.
    return {name: values.get(name, FAILED) for name in declared}, frozenset(sensitive)


def _dependency_order(dependencies: dict[str, list[str]]) -> tuple[list[str], list[list[str]]]:
    """Names with their dependencies first, and every cycle found (each as a closed path).
    Depth-first with an explicit stack, so long chains of locals cannot exhaust recursion."""
    order: list[str] = []
    cycles: list[list[str]] = []
    state: dict[str, str] = {}
    for start in dependencies:
        if start in state:
            continue
        path: list[str] = [start]
        pending: list[list[str]] = [list(dependencies[start])]
        state[start] = "visiting"
        while path:
            if not pending[-1]:
                finished = path.pop()
                pending.pop()
                state[finished] = "done"
                order.append(finished)
                continue
            name = pending[-1].pop(0)
            if state.get(name) == "visiting":
                cycles.append(path[path.index(name) :] + [name])
            elif name not in state:
                state[name] = "visiting"
                path.append(name)
                pending.append(list(dependencies[name]))
    return order, cycles


def _policy(blocks: list[Block], scope: Scope, keys: dict[str, KeyConfig], diagnostics: Diagnostics) -> Policy:
    # Imported here: the policy package reads blocks with this package's evaluator.
    from keyplan.policy.block import read_policy

    return read_policy(blocks, scope, keys, diagnostics)


def _current_workspace(directory: Path, environ: Mapping[str, str], diagnostics: Diagnostics) -> str:
    from keyplan.state.workspaces import current_workspace

    try:
        return current_workspace(directory, environ)
    except DiagnosticsError as exc:
        diagnostics.extend(exc.diagnostics)
        return "default"


def _report(exc: EvaluationError, diagnostics: Diagnostics) -> None:
    diagnostics.extend(exc.diagnostics)


# ---------------------------------------------------------------------------------------------
# keyplan, source and provider blocks
# ---------------------------------------------------------------------------------------------


def _state_backend(blocks: list[Block], scope: Scope, diagnostics: Diagnostics) -> StateBackendConfig:
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


def _approvals(blocks: list[Block], scope: Scope, diagnostics: Diagnostics) -> ApprovalPolicy | None:
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


def _plugin_block(block: Block, scope: Scope, diagnostics: Diagnostics) -> PluginBlock:
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
            _report(exc, diagnostics)
            continue
        values[name] = plain(value)
        if derived:
            sensitive.add(name)
    return values, ranges, frozenset(sensitive)


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def _expand_key(block: Block, scope: Scope, diagnostics: Diagnostics) -> list[KeyConfig]:
    name = block.labels[0]
    if not _check_key_body(block, diagnostics):
        return []
    for_each = block.body.attributes.get("for_each")
    if for_each is None:
        instance = _KeyInstance(block, replace(scope, where=f"in key.{name}, which has no for_each"), diagnostics)
        key = instance.build(f"key.{name}", None)
        return [key] if key is not None else []
    elements = _for_each_elements(for_each, replace(scope, where="in for_each itself"), diagnostics)
    keys = []
    for each_key, each_value in elements:
        address = f"key.{name}[{json.dumps(each_key, ensure_ascii=False)}]"
        instance = _KeyInstance(block, replace(scope, each=(each_key, each_value), where=address), diagnostics)
        key = instance.build(address, each_key)
        if key is not None:
            keys.append(key)
    return keys


def _check_key_body(block: Block, diagnostics: Diagnostics) -> bool:
    ok = True
    body = block.body
    for attribute in body.attributes.values():
        if attribute.name not in KEY_ATTRIBUTES:
            ok = False
            hint = did_you_mean(attribute.name, KEY_ATTRIBUTES)
            diagnostics.error(
                "Unsupported argument",
                f"A key block has no argument `{attribute.name}`.{hint} The arguments are "
                f"{', '.join(KEY_ATTRIBUTES)}; remove it or correct its name.",
                range=attribute.name_range,
            )
    for required in KEY_REQUIRED:
        if required not in body.attributes:
            ok = False
            diagnostics.error(
                "Missing required argument",
                f"The key block {quoted(block.labels[0])} does not set `{required}`, which every key needs. Add "
                f"`{required} = ...` to the block.",
                range=block.range,
                address=f"key.{block.labels[0]}",
            )
    seen: dict[str, SourceRange] = {}
    for nested in body.blocks:
        allowed = KEY_BLOCKS.get(nested.type)
        if allowed is None:
            ok = False
            diagnostics.error(
                "Unsupported block type",
                f"A key block has no `{nested.type}` block.{did_you_mean(nested.type, KEY_BLOCKS)} The nested blocks "
                f"are {', '.join(KEY_BLOCKS)}; remove it or correct its name.",
                range=nested.range,
            )
            continue
        if nested.type in seen:
            ok = False
            diagnostics.error(
                f"Duplicate {nested.type} block",
                f"The {nested.type} block is already set at {seen[nested.type]}. Keep one.",
                range=nested.range,
            )
        seen[nested.type] = nested.range
        if nested.labels:
            ok = False
            diagnostics.error(
                "Unexpected block label",
                f"The {nested.type} block takes no labels. Write it as `{nested.type} {{ ... }}`.",
                range=nested.label_ranges[0],
            )
        for attribute in nested.body.attributes.values():
            if attribute.name not in allowed:
                ok = False
                diagnostics.error(
                    "Unsupported argument",
                    f"The {nested.type} block has no argument `{attribute.name}`.{did_you_mean(attribute.name, allowed)} "
                    f"It accepts {', '.join(allowed)}; remove it or correct its name.",
                    range=attribute.name_range,
                )
    return ok


def _for_each_elements(attribute: Attribute, scope: Scope, diagnostics: Diagnostics) -> list[tuple[str, Any]]:
    try:
        value, sensitive = Evaluator(scope).evaluate_marked(attribute.expr)
    except EvaluationError as exc:
        _report(exc, diagnostics)
        return []
    if sensitive:
        _sensitive_in_key(diagnostics, "for_each", attribute.expr.range, "its keys become key addresses, shown everywhere")
        return []
    if isinstance(value, dict):
        return [(key, value[key]) for key in sorted(value)]
    if isinstance(value, SetValue) and all(isinstance(item, str) for item in value):
        return [(item, item) for item in value]
    if isinstance(value, list | tuple) and not isinstance(value, SetValue) and all(isinstance(i, str) for i in value):
        hint = "Convert the list with toset(...), which also removes duplicates."
    elif isinstance(value, SetValue):
        hint = "Every element of the set must be a string; build a map with a for expression for other values."
    else:
        hint = 'Give a map (each.value is the element) or a set of strings, for example toset(["a", "b"]).'
    diagnostics.error(
        "Invalid for_each argument",
        f"for_each takes a map or a set of strings, and this is a {_describe_collection(value)}. {hint}",
        range=attribute.expr.range,
    )
    return []


def _describe_collection(value: Any) -> str:
    if isinstance(value, list | tuple) and value:
        inner = {type_name(item) for item in value}
        return f"{type_name(value)} of {'/'.join(sorted(inner))}"
    return type_name(value)


class _KeyInstance:
    """Evaluates one key block for one for_each element (or the only instance)."""

    def __init__(self, block: Block, scope: Scope, diagnostics: Diagnostics) -> None:
        self.block = block
        self.scope = scope
        self.evaluator = Evaluator(scope)
        self.diagnostics = diagnostics
        self.failed = False
        self.ranges: dict[str, SourceRange] = {}

    def build(self, address: str, each_key: str | None) -> KeyConfig | None:
        attributes = self.block.body.attributes
        values = {name: self.value(attribute) for name, attribute in attributes.items() if name != "for_each"}
        settings: dict[str, Any] = {
            "algorithm": self.text(values, "algorithm"),
            "usage": self.text(values, "usage", optional=True),
            "source": self.text(values, "source"),
            "targets": self.strings(values, "targets"),
            "labels": self.labels(values),
            "description": self.text(values, "description", optional=True),
            "aliases": self.strings(values, "aliases"),
            "enabled": self.flag(values, "enabled", default=True),
        }
        settings.update(self.nested_blocks())
        if self.failed:
            return None
        return KeyConfig(
            address=address,
            name=self.block.labels[0],
            each_key=each_key,
            range=self.block.range,
            attribute_ranges=self.ranges,
            **{name: value for name, value in settings.items() if value is not None},
        )

    # -- evaluation with error capture --------------------------------------------------------

    def value(self, attribute: Attribute, where: str | None = None) -> Any:
        self.ranges[attribute.name] = attribute.expr.range
        try:
            value, sensitive = self.evaluator.evaluate_marked(attribute.expr)
        except EvaluationError as exc:
            _report(exc, self.diagnostics)
            self.failed = True
            return FAILED
        if sensitive:
            self.failed = True
            _sensitive_in_key(self.diagnostics, where or attribute.name, attribute.expr.range, None)
            return FAILED
        return value

    def wrong_type(self, attribute: str, expected: str, got: Any, range: SourceRange | None = None) -> None:
        self.failed = True
        self.diagnostics.error(
            "Incorrect attribute value type",
            f"`{attribute}` must be {expected}, and this is a {_describe_collection(got)}. Correct the value.",
            range=range or self.ranges.get(attribute, self.block.range),
            address=self.scope.where if self.scope.each else None,
        )

    # -- attribute shapes ---------------------------------------------------------------------

    def text(self, values: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
        value = values.get(name)
        if value is FAILED or (value is None and optional) or (value is None and name not in values):
            return None
        if isinstance(value, str):
            return value
        self.wrong_type(name, "a string", value)
        return None

    def strings(self, values: dict[str, Any], name: str) -> tuple[str, ...] | None:
        value = values.get(name)
        if value is FAILED or (value is None and name not in values):
            return None
        if not isinstance(value, list | tuple):
            self.wrong_type(name, "a list of strings", value)
            return None
        expr = self.block.body.attributes[name].expr
        items = expr.items if isinstance(expr, TupleExpr) and len(expr.items) == len(value) else None
        for index, item in enumerate(value):
            item_range = items[index].range if items else None
            if item_range is not None:
                self.ranges[f"{name}[{index}]"] = item_range
            if not isinstance(item, str):
                self.wrong_type(name, "a list of strings", value, item_range)
                return None
        return tuple(value)

    def labels(self, values: dict[str, Any]) -> dict[str, str] | None:
        value = values.get("labels")
        if value is FAILED or value is None:
            return None
        if not isinstance(value, dict):
            self.wrong_type("labels", "a map of strings", value)
            return None
        expr = self.block.body.attributes["labels"].expr
        for label, item in value.items():
            if isinstance(item, str):
                continue
            self.failed = True
            self.diagnostics.error(
                "Label value is not a string",
                f"The label {quoted(label)} has a {type_name(item)} value, and labels hold strings only. Quote the "
                'value (for example "true" or "3") or convert it with tostring().',
                range=_object_item_range(expr, label) or self.ranges["labels"],
                address=self.scope.where if self.scope.each else None,
            )
        return dict(value)

    def flag(self, values: dict[str, Any], name: str, *, default: bool) -> bool | None:
        value = values.get(name, default)
        if value is FAILED:
            return None
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.wrong_type(name, "true or false", value)
        return None

    def nested_blocks(self) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for nested in self.block.body.blocks:
            values = {
                name: self.value(attribute, f"{nested.type}.{name}") for name, attribute in nested.body.attributes.items()
            }
            for name, attribute in nested.body.attributes.items():
                self.ranges[f"{nested.type}.{name}"] = attribute.expr.range
            if nested.type == "expiry":
                self.ranges["expiry"] = nested.range
                settings["expiry"] = self.expiry(nested, values)
            elif nested.type == "rotation":
                self.ranges["rotation"] = nested.range
                settings["rotation"] = self.duration(nested, values, "every", required=True)
            elif nested.type == "lifecycle":
                settings["prevent_destroy"] = self.flag(values, "prevent_destroy", default=False)
        return settings

    def expiry(self, block: Block, values: dict[str, Any]) -> timedelta | None:
        never = self.flag(values, "never", default=False)
        if "after" in values and never:
            self.failed = True
            self.diagnostics.error(
                "Conflicting expiry settings",
                "The expiry block sets both `after` and `never = true`. Keep one of them.",
                range=block.range,
            )
            return None
        if "after" not in values and "never" not in values:
            self.failed = True
            self.diagnostics.error(
                "Empty expiry block",
                'The expiry block needs `after = "365d"` (material expires that long after import) or '
                "`never = true`. Add one of them.",
                range=block.range,
            )
            return None
        return self.duration(block, values, "after", required=False)

    def duration(self, block: Block, values: dict[str, Any], name: str, *, required: bool) -> timedelta | None:
        value = values.get(name)
        if value is FAILED or (value is None and not required and name not in values):
            return None
        range = self.ranges.get(f"{block.type}.{name}", block.range)
        if value is None:
            self.failed = True
            self.diagnostics.error(
                "Missing required argument",
                f'The {block.type} block needs `{name}`, a duration like "90d". Add it.',
                range=range,
            )
            return None
        if not isinstance(value, str):
            self.wrong_type(f"{block.type}.{name}", 'a duration string like "90d"', value, range)
            return None
        try:
            return parse_duration(value)
        except DurationError as exc:
            self.failed = True
            self.diagnostics.error(
                "Invalid duration",
                f"The value {show(value, self.scope)} of `{block.type}.{name}` is not a valid duration "
                f"({exc.message}). {exc.hint}",
                range=range,
            )
            return None


def _sensitive_in_key(diagnostics: Diagnostics, attribute: str, range: SourceRange, why: str | None) -> None:
    diagnostics.error(
        "Sensitive value in a key block",
        f"`{attribute}` is derived from a sensitive value (a variable declared with `sensitive = true`, or a "
        f"local computed from one). Everything a key block says reaches the clouds, where labels, descriptions "
        f"and aliases are readable by anyone allowed to list keys, and is recorded in clear in state and plan "
        f"files{' (' + why + ')' if why else ''}, so keyplan refuses to send it. If the value is not secret, "
        "remove `sensitive = true` from the variable, or wrap the expression in nonsensitive(...) to publish it "
        "explicitly.",
        range=range,
    )


def _object_item_range(expr: Expr, key: str) -> SourceRange | None:
    if isinstance(expr, ObjectExpr):
        for item in expr.items:
            if getattr(item.key, "value", None) == key:
                return item.value.range
    return None


# ---------------------------------------------------------------------------------------------
# Finishing
# ---------------------------------------------------------------------------------------------


def _finish(diagnostics: Diagnostics, sensitive: frozenset[str]) -> Diagnostics:
    """Drop repeats (the same problem in every for_each instance) and, as a last guard, blank out
    any sensitive string that a message might still contain."""
    secrets = [json.loads(leaf) for leaf in sensitive]
    words = sorted((s for s in secrets if isinstance(s, str) and len(s) >= 3), key=len, reverse=True)
    final = Diagnostics()
    seen: set[tuple[str, str, str, str]] = set()
    for item in diagnostics:
        summary, detail = item.summary, item.detail
        for word in words:
            summary = summary.replace(word, "(sensitive value)")
            detail = detail.replace(word, "(sensitive value)")
        identity = (item.severity.value, summary, detail, str(item.range))
        if identity in seen:
            continue
        seen.add(identity)
        final.add(Diagnostic(severity=item.severity, summary=summary, detail=detail, range=item.range, address=item.address))
    return final


def configuration_digest(config: Config) -> str:
    """sha256 over what the configuration means once evaluated: every setting and key, and the
    variables' values; not file names, positions, comments or layout, so a saved plan survives a
    comment-only edit. Sensitive values are left out (a hash of a short secret such as a PIN can
    be guessed, and the digest is written into plan files): changing one alone does not make a
    saved plan stale."""
    document = config.model_dump(mode="json", exclude={"directory", "files", "digest", "variables"})
    for section in ("sources", "providers"):
        for address, block in getattr(config, section).items():
            attributes = document[section][address]["attributes"]
            document[section][address]["attributes"] = {
                name: SENSITIVE_MARK if name in block.sensitive else value for name, value in attributes.items()
            }
    document["state"]["attributes"] = {
        name: SENSITIVE_MARK if name in config.state.sensitive else value
        for name, value in document["state"]["attributes"].items()
    }
    document["variables"] = {
        name: SENSITIVE_MARK if variable.sensitive else variable.value for name, variable in config.variables.items()
    }
    return hashlib.sha256(canonical_json(_without_positions(document)).encode()).hexdigest()


SENSITIVE_MARK = "(sensitive value)"


def _without_positions(value: Any) -> Any:
    """The document without source ranges (a SourceRange, or a map of them, under a key ending
    in `range` or `ranges`), which move with every edit above them."""
    if isinstance(value, dict):
        return {
            key: _without_positions(item)
            for key, item in value.items()
            if not (key.endswith(("range", "ranges")) and _is_position(item))
        }
    if isinstance(value, list):
        return [_without_positions(item) for item in value]
    return value


def _is_position(value: Any) -> bool:
    if value is None or value == [] or value == {}:
        return True
    if isinstance(value, dict) and "filename" in value and "line" in value:
        return True
    if isinstance(value, dict):
        return all(_is_position(item) for item in value.values())
    if isinstance(value, list):
        return all(_is_position(item) for item in value)
    return False
