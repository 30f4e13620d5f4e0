"""State format upgrades, one version at a time (v0 -> v1 -> …), like a database migration.

Each step takes the raw JSON object of version N and returns version N+1. A state written by a
newer keyplan is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keyplan.crypto.fingerprint import is_current_fingerprint
from keyplan.diagnostics import DiagnosticsError
from keyplan.state.model import FORMAT_VERSION


def _v0_to_v1(raw: dict[str, Any]) -> dict[str, Any]:
    # Format 0 (pre-release) called the key map "resources" and had no prerequisites section.
    upgraded = dict(raw)
    upgraded["keys"] = upgraded.pop("resources", {})
    upgraded.setdefault("prerequisites", {})
    upgraded["format_version"] = 1
    return upgraded


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    # Format 1 fingerprinted AES keys with E_K(0^128) in full (GCM's hash subkey) and HMAC keys
    # with a whole tag. They cannot be recomputed without the key source, so they are dropped
    # (None: "recompute"); the next apply asks the source for the current definition.
    upgraded = dict(raw)
    keys = upgraded.get("keys")
    if isinstance(keys, dict):
        upgraded["keys"] = {address: _without_old_fingerprints(record) for address, record in keys.items()}
    upgraded["format_version"] = 2
    return upgraded


def _without_old_fingerprints(record: Any) -> Any:
    if not isinstance(record, dict) or not isinstance(record.get("materials"), list):
        return record
    materials = [
        {**m, "fingerprint": None}
        if isinstance(m, dict) and isinstance(m.get("fingerprint"), str) and not is_current_fingerprint(m["fingerprint"])
        else m
        for m in record["materials"]
    ]
    return {**record, "materials": materials}


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1, 1: _v1_to_v2}


def upgrade_state(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise DiagnosticsError.single(
            "State file has no format version",
            f"{origin} lacks an integer `format_version`, so it is not a keyplan state or it was damaged. "
            f"Restore it from {origin}.backup.",
        )
    if version > FORMAT_VERSION:
        raise DiagnosticsError.single(
            "State file was written by a newer keyplan",
            f"{origin} has format version {version}; this keyplan reads up to {FORMAT_VERSION}. "
            "Upgrade keyplan to work with this state.",
        )
    if version < FORMAT_VERSION and version not in UPGRADES:
        # Never guessed at: an upgrade from a format keyplan never wrote could drop every record.
        raise DiagnosticsError.single(
            "State file has an unknown format version",
            f"{origin} has format version {version}, which no keyplan wrote (this one reads "
            f"{min(UPGRADES)} to {FORMAT_VERSION}). It was edited or damaged; nothing was changed. Restore it from "
            f"{origin}.backup or from your state history.",
        )
    while version < FORMAT_VERSION:
        raw = UPGRADES[version](raw)
        version = raw["format_version"]
    return raw
