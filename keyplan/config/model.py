"""The evaluated configuration: what `*.kp.hcl` files declare once variables, locals, for_each
and expressions are resolved. Everything downstream (validate, plan) reads only this.

Addresses:
- a key: `key.NAME` or, with for_each, `key.NAME["EACH_KEY"]`;
- a source: `software.NAME`, `pkcs11.NAME` (referenced in HCL as `source.software.NAME`);
- a provider: `KIND.NAME` (referenced as `provider.KIND.NAME`), KIND a provider plugin.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from keyplan.approvals import ApprovalPolicy
from keyplan.diagnostics import SourceRange
from keyplan.policy.model import Policy


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StateBackendConfig(_Model):
    kind: str = "local"
    attributes: dict[str, Any] = {}  # local: {"path": "keyplan.kpstate.json"}
    range: SourceRange | None = None
    sensitive: frozenset[str] = frozenset()  # attributes derived from a sensitive value
    attribute_ranges: dict[str, SourceRange] = {}


class PluginBlock(_Model):
    """A `source "KIND" "NAME"` or `provider "KIND" "NAME"` block with evaluated attributes."""

    kind: str
    name: str
    address: str  # "KIND.NAME"
    attributes: dict[str, Any]
    range: SourceRange
    attribute_ranges: dict[str, SourceRange] = {}
    sensitive: frozenset[str] = frozenset()  # attributes derived from a sensitive value


class KeyConfig(_Model):
    """One key instance (one per for_each element)."""

    address: str
    name: str
    each_key: str | None = None
    algorithm: str
    usage: str | None = None
    source: str  # source address, e.g. "software.main"
    targets: tuple[str, ...]  # provider addresses, KIND.NAME
    labels: dict[str, str] = {}
    description: str | None = None
    aliases: tuple[str, ...] = ()
    enabled: bool = True
    expiry: timedelta | None = None  # None: `expiry { never = true }` or no expiry block
    rotation: timedelta | None = None
    prevent_destroy: bool = False
    range: SourceRange
    attribute_ranges: dict[str, SourceRange] = {}  # "algorithm", "labels", "targets", … -> where

    def range_of(self, attribute: str) -> SourceRange:
        return self.attribute_ranges.get(attribute, self.range)


class VariableValue(_Model):
    name: str
    value: Any
    sensitive: bool = False


class Config(_Model):
    directory: str
    files: tuple[str, ...]
    digest: str  # sha256 over the evaluated configuration and the variables' values, for plan files
    state: StateBackendConfig
    sources: dict[str, PluginBlock]
    providers: dict[str, PluginBlock]
    keys: dict[str, KeyConfig]
    variables: dict[str, VariableValue] = {}
    policy: Policy = Policy()  # the `policy` block; keyplan.policy runs it
    approvals: ApprovalPolicy | None = None  # keyplan { approvals { ... } }: who must sign saved plans
