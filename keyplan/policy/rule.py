"""What a policy rule is: its parameters, what it may read (`PolicyInputs`), what it reports
(`Violation`), and the `Rule` record the catalogue in `keyplan.policy.rules` is made of.

The engine (`keyplan.policy.engine`) runs rules and turns violations into findings; a rule's
check only reads its inputs and yields violations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from keyplan.diagnostics import SourceRange
from keyplan.policy.model import FindingSeverity, Phase, Selector
from keyplan.policy.selectors import KeyFacts, key_facts
from keyplan.provider import ProviderPlugin, ProviderSettings, RemoteKey, SourceCapabilities

if TYPE_CHECKING:
    from keyplan.config.model import Config, KeyConfig
    from keyplan.state.model import State

PRODUCTION = Selector(labels={"env": ("prod", "production")})


class RuleParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Violation:
    address: str
    message: str
    range: SourceRange | None = None
    target: str | None = None
    fix: str | None = None  # None: the rule's fix


@dataclass
class PolicyInputs:
    """Everything rules may read. `state` and `live` are None when the command has no access."""

    config: Config
    sources: dict[str, SourceCapabilities]  # source address -> declared capabilities
    targets: dict[str, tuple[ProviderPlugin[Any], ProviderSettings]]  # provider address -> plugin, settings
    now: datetime
    state: State | None = None
    live: dict[str, dict[str, RemoteKey]] | None = None  # provider address -> remote id -> key

    def facts(self, key: KeyConfig) -> KeyFacts:
        return key_facts(key)

    @cached_property
    def fingerprints(self) -> dict[str, set[str]]:
        """Material fingerprint -> key addresses whose material it is (from the state)."""
        index: dict[str, set[str]] = {}
        for address, record in (self.state.keys if self.state else {}).items():
            for material in record.materials:
                if material.fingerprint is not None:  # None: not yet recomputed after a state upgrade
                    index.setdefault(material.fingerprint, set()).add(address)
        return index

    @cached_property
    def remote_keys(self) -> dict[tuple[str, str], set[str]]:
        """(provider address, remote id) -> key addresses recorded with it (from the state)."""
        index: dict[tuple[str, str], set[str]] = {}
        for address, record in (self.state.keys if self.state else {}).items():
            for target, target_record in record.targets.items():
                index.setdefault((target, target_record.remote_id), set()).add(address)
        return index

    def sharing(self, address: str) -> set[str]:
        """Other key addresses that share material or a remote key with this one, per the state."""
        record = self.state.keys.get(address) if self.state else None
        if record is None:
            return set()
        others: set[str] = set()
        for material in record.materials:
            if material.fingerprint is not None:
                others |= self.fingerprints.get(material.fingerprint, set())
        for target, target_record in record.targets.items():
            others |= self.remote_keys.get((target, target_record.remote_id), set())
        return others - {address}

    def labels_of(self, address: str) -> dict[str, str]:
        key = self.config.keys.get(address)
        return dict(key.labels) if key else {}


Check = Callable[[PolicyInputs, "KeyConfig", Any], Iterator[Violation]]
LiveCheck = Callable[[PolicyInputs, Any], Iterator[tuple[KeyFacts, Violation]]]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    rationale: str
    fix: str
    severity: FindingSeverity
    phase: Phase
    params: type[RuleParams] = RuleParams
    scope: Selector | None = None  # default scope; None: every key
    check: Check | None = None  # per configured key
    live_check: LiveCheck | None = None  # over the live inventory (keys in config or not)
