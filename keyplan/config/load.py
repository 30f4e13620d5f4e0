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
from pathlib import Path
from typing import Any

from keyplan.config.blocks import approvals_policy, plugin_block, state_backend
from keyplan.config.bounds import MAX_FILE_BYTES
from keyplan.config.expressions import Evaluator, Scope, references
from keyplan.config.failures import FAILED, EvaluationError
from keyplan.config.keys import expand_key
from keyplan.config.model import Config, KeyConfig, VariableValue
from keyplan.config.suggestions import did_you_mean
from keyplan.config.syntax import Attribute, Block, Body, parse_file, quoted
from keyplan.config.values import canonical_json, plain
from keyplan.config.variables import declare_variable, resolve_variables
from keyplan.diagnostics import Diagnostic, Diagnostics, DiagnosticsError, SourceRange
from keyplan.escaping import for_terminal
from keyplan.policy.model import Policy

FILE_SUFFIX = ".kp.hcl"

_NAME = re.compile(r"^[^\W\d][\w-]*$")  # as HCL identifiers: a letter or underscore, then letters, digits, _ and -
_BLOCK_LABELS = {"keyplan": (), "variable": ("name",), "locals": (), "source": ("kind", "name"),
                 "provider": ("kind", "name"), "key": ("name",), "policy": ()}  # fmt: skip
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
    paths = sorted(p for p in directory.glob(f"*{FILE_SUFFIX}") if not p.is_dir())
    if not paths:
        diagnostics.error(
            "No configuration files",
            f"The directory {directory} holds no *{FILE_SUFFIX} files. Run keyplan in the directory that holds "
            "the configuration, or create a main.kp.hcl there.",
        )
        return None, diagnostics
    contents = {path.name: data for path in paths if (data := _read(path, diagnostics)) is not None}
    if diagnostics.has_errors():
        return None, diagnostics
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

    state = state_backend(declarations.keyplan, scope, diagnostics)
    approvals = approvals_policy(declarations.keyplan, scope, diagnostics)
    sources = {address: plugin_block(block, scope, diagnostics) for address, block in declarations.sources.items()}
    providers = {address: plugin_block(block, scope, diagnostics) for address, block in declarations.providers.items()}
    keys: dict[str, KeyConfig] = {}
    for block in declarations.keys.values():
        for key in expand_key(block, scope, diagnostics):
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


def _read(path: Path, diagnostics: Diagnostics) -> bytes | None:
    """A configuration file's bytes. One that cannot be read is an error, never skipped: the keys it
    declares would be missing from the plan, which would schedule their deletion."""
    problem = None
    if not path.is_file():  # a dangling or looping symbolic link, a pipe (reading would wait forever), a device
        problem = "it is not a regular file (a broken symbolic link, a pipe or a device)"
    else:
        try:
            with path.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
            if len(data) <= MAX_FILE_BYTES:
                return data
            problem = f"it is larger than {MAX_FILE_BYTES // 2**20} MiB"
        except OSError as exc:
            problem = f"it cannot be read ({exc.strerror or type(exc).__name__})"
    diagnostics.error(
        "Cannot read a configuration file",
        f"keyplan reads every *{FILE_SUFFIX} file of the directory, and {for_terminal(path.name)}: {problem}. "
        "Fix or remove it (or rename it so it does not end in .kp.hcl); a file left out would leave its keys out "
        "of the plan.",
    )
    return None


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
    if not blocks:
        return Policy()
    # Imported here: the policy package reads blocks with this package's evaluator (and its rules
    # load only for a configuration that declares a policy).
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
    saved plan stale.

    The hashed text is the canonical JSON of one document (sorted keys, no spaces), written
    section by section and key by key: at 100,000 keys the whole document at once took gigabytes."""
    document = config.model_dump(mode="json", exclude={"directory", "files", "digest", "variables", "keys"})
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
    digest = hashlib.sha256()
    digest.update(b"{")
    for index, section in enumerate(sorted([*document, "keys"])):
        digest.update(f"{',' if index else ''}{_json_key(section)}:".encode())
        if section == "keys":
            _digest_keys(digest, config.keys)
        else:
            digest.update(canonical_json(_without_positions(document[section])).encode())
    digest.update(b"}")
    return digest.hexdigest()


def _digest_keys(digest: hashlib._Hash, keys: Mapping[str, KeyConfig]) -> None:
    """The `keys` section of the digest's document, one key at a time. A key's positions are
    its two fields `range` and `attribute_ranges` (its other values are strings, lists of
    strings, a map of strings, numbers and flags: none is a position)."""
    digest.update(b"{")
    for index, address in enumerate(sorted(keys)):
        document = keys[address].model_dump(mode="json", exclude=_KEY_POSITIONS)
        key = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest.update(f"{',' if index else ''}{_json_key(address)}:{key}".encode())
    digest.update(b"}")


_KEY_POSITIONS = {"range", "attribute_ranges"}


def _json_key(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


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
