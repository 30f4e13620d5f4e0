"""The settings reference (docs/reference.md), generated from every registered plugin's
settings model and the policy rules' parameter models, so the documentation cannot drift from
the code. A test checks the committed
file matches.

Regenerate with: python -m keyplan.reference
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from keyplan.algorithms import ALGORITHMS
from keyplan.registry import provider_kinds, provider_plugin, source_kinds, source_plugin
from keyplan.state.registry import backend_kinds, backend_plugin

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict) and not value:
        return "`{}`"
    if isinstance(value, (tuple, list)):
        return f"`{json.dumps(list(value))}`"
    if isinstance(value, (str, Path)):
        return f'`"{value}"`'
    return f"`{value}`"


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace("NoneType", "null")


def _table(model: type[BaseModel]) -> list[str]:
    lines = ["| setting | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("\n", " ").replace("|", "\\|")
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        lines.append(f"| `{name}` | `{_type(field.annotation)}` | {_default(default)} | {description} |")
    return lines


def _rate_classes(model: type[BaseModel]) -> list[str]:
    """The operation classes a provider's calls are paced by, and their documented defaults."""
    declared = getattr(model, "default_rate_classes", None)
    classes = declared() if callable(declared) else ()
    if not classes:
        return []
    lines = [
        "",
        "Operation classes (`rate_limits`), at the cloud's documented default rates (sources in docs/quotas.md):",
        "",
        "| class | requests/s | shared by | operations |",
        "|---|---|---|---|",
    ]
    for c in classes:
        lines.append(f"| `{c.name}` | {c.per_second:g} | {c.scope} | {', '.join(c.operations)} |")
    return lines


def render() -> str:
    out = [
        "# keyplan settings reference",
        "",
        "Generated from the plugins' settings models by `python -m keyplan.reference`; do not edit by hand.",
        "",
        "## Key sources (`source \"KIND\" \"NAME\" { ... }`)",
    ]
    for kind in source_kinds():
        plugin = source_plugin(kind)
        if plugin is None:
            continue
        out += ["", f"### `{kind}`", "", *_table(plugin.settings_model)]
    out += ["", "## Providers (`provider \"KIND\" \"NAME\" { ... }`)"]
    for kind in provider_kinds():
        provider = provider_plugin(kind)
        if provider is None:
            continue
        out += ["", f"### `{kind}`", "", *_table(provider.settings_model), *_rate_classes(provider.settings_model)]
    out += ["", "## State backends (`keyplan { state \"KIND\" { ... } }`)", "", "See docs/state.md for how each locks and journals."]
    for kind in backend_kinds():
        backend = backend_plugin(kind)
        if backend is None:
            continue
        out += ["", f"### `{kind}`", "", *_table(backend.settings_model)]
    out += _policy_rules()
    out += ["", "## Algorithms", "", "| algorithm | kind | usages (first is the default) |", "|---|---|---|"]
    for name, algorithm in ALGORITHMS.items():
        out.append(f"| `{name}` | {algorithm.kind.value} | {', '.join(u.value for u in algorithm.usages)} |")
    return "\n".join(out) + "\n"


def _policy_rules() -> list[str]:
    from keyplan.policy.model import Phase
    from keyplan.policy.rules import RULES

    reads = {
        Phase.CONFIG: "the configuration (validate, plan, check)",
        Phase.STATE: "the configuration and the state (plan, check)",
        Phase.LIVE: "the state and the clouds' live inventory (drift)",
    }
    out = ["", "## Policy rules (`policy { rule \"ID\" { ... } }`)", ""]
    out.append("Every rule also takes `enabled`, `severity` (error, warning, info) and a `scope` block.")
    for rule in RULES.values():
        scope = ", ".join(f"{k} = {' or '.join(v)}" for k, v in rule.scope.labels.items()) if rule.scope else "every key"
        out += [
            "",
            f"### `{rule.id}`",
            "",
            f"{rule.title}: {rule.rationale} Default severity {rule.severity.value}; reads {reads[rule.phase]}; "
            f"default scope: {scope}. Fix: {rule.fix}",
        ]
        if rule.params.model_fields:
            out += ["", *_table(rule.params)]
    return out


if __name__ == "__main__":
    REFERENCE.write_text(render())
    print(f"wrote {REFERENCE.relative_to(REFERENCE.parents[1])}")
