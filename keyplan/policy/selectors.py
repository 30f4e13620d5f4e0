"""Selectors: which keys a rule, exception or custom rule applies to.

A selector is matched against a key's `KeyFacts` (address, labels, source kind, target kinds),
which exist for configured keys and for keys known only to the state or a cloud alike. Every
criterion the selector gives must hold; patterns are shell wildcards.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from keyplan.policy.model import Selector

if TYPE_CHECKING:
    from keyplan.config.model import KeyConfig


@dataclass(frozen=True)
class KeyFacts:
    address: str
    labels: dict[str, str]
    source_kind: str | None = None
    target_kinds: frozenset[str] = frozenset()


def kind_of(plugin_address: str) -> str:
    """`KIND.NAME` -> `KIND`: the plugin name of a source or provider address."""
    return plugin_address.split(".", 1)[0]


def key_facts(key: KeyConfig) -> KeyFacts:
    return KeyFacts(
        address=key.address,
        labels=dict(key.labels),
        source_kind=kind_of(key.source),
        target_kinds=frozenset(kind_of(t) for t in key.targets),
    )


def matches(selector: Selector | None, facts: KeyFacts) -> bool:
    if selector is None:
        return True
    if selector.addresses and not any(fnmatchcase(facts.address, pattern) for pattern in selector.addresses):
        return False
    for label, accepted in selector.labels.items():
        value = facts.labels.get(label)
        if value is None or not any(fnmatchcase(value, pattern) for pattern in accepted):
            return False
    if selector.target_kinds and not facts.target_kinds & set(selector.target_kinds):
        return False
    return not (selector.source_kinds and facts.source_kind not in selector.source_kinds)


def describe(selector: Selector | None) -> str:
    """The selector in words, for findings and reports."""
    if selector is None:
        return "every key"
    parts = [f"{label} = {' or '.join(values)}" for label, values in sorted(selector.labels.items())]
    if selector.addresses:
        parts.append("address " + " or ".join(selector.addresses))
    if selector.target_kinds:
        parts.append("a target of kind " + " or ".join(selector.target_kinds))
    if selector.source_kinds:
        parts.append("a source of kind " + " or ".join(selector.source_kinds))
    return "keys with " + ", ".join(parts) if parts else "every key"
