"""`keyplan discover`: a provider's imported keys, sorted into what keyplan can adopt and what it
cannot (and why), written out as `key` blocks and the `keyplan import` commands that adopt them.
Adopting itself is `keyplan.adopt`'s.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from keyplan.config.model import Config
from keyplan.escaping import for_terminal
from keyplan.provider import (
    KeyState,
    RemoteKey,
)
from keyplan.state.model import State


@dataclass(frozen=True)
class Discovered:
    """One imported key found at a target, and what keyplan can do with it."""

    key: RemoteKey
    status: str  # "managed" (in state here), "tagged" (this state's tags, not in state), "other", "unmanaged"
    address: str | None  # the key address keyplan knows it by, when any
    holds_material: bool


def classify(keys: list[RemoteKey], state: State, target: str) -> list[Discovered]:
    recorded = {tr.remote_id: a for a, r in state.keys.items() for t, tr in r.targets.items() if t == target}
    found = []
    for key in sorted(keys, key=lambda k: k.remote_id):
        if key.remote_id in recorded:
            address = recorded[key.remote_id]
            found.append(Discovered(key, "managed", address, True))
        elif key.managed_by and key.managed_by != state.managed_by:
            found.append(Discovered(key, "other", key.address, False))
        elif key.managed_by == state.managed_by and key.address:
            held = key.address in state.keys and bool(state.keys[key.address].materials)
            found.append(Discovered(key, "tagged", key.address, held))
        else:
            found.append(Discovered(key, "unmanaged", None, False))
    return found


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _hcl_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")


def _hcl_key(name: str) -> str:
    return name if _IDENT.fullmatch(name) else _hcl_string(name)


def _block_name(found: Discovered, taken: set[str]) -> str:
    if found.address:
        base = found.address.removeprefix("key.").split("[", 1)[0]
    elif found.key.aliases:
        base = found.key.aliases[0].removeprefix("alias/")
    else:
        base = found.key.remote_id.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9_-]", "_", base).strip("_") or "imported"
    if not _IDENT.fullmatch(name):
        name = "key_" + name
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    taken.add(unique)
    return unique


def _quote_shell(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def render_discovery(target: str, found: list[Discovered], state: State, config: Config, generated_at: datetime) -> str:
    """HCL `key` blocks for the keys found, commented out where keyplan cannot manage them,
    and the `keyplan import` commands to run (as comments)."""
    default_source = next(iter(sorted(config.sources)), "KIND.NAME")
    lines = [
        f"# Imported (BYOK) keys found at {target} by `keyplan discover` at {generated_at.isoformat(timespec='seconds')}.",
        "# Blocks written as comments are keys keyplan cannot manage: it does not hold their material.",
        "",
    ]
    commands: list[str] = []
    taken = {a.removeprefix("key.").split("[", 1)[0] for a in config.keys}
    for item in found:
        key = item.key
        lines.append(f"# {key.remote_id}: {key.algorithm or 'an algorithm keyplan does not import'}, {key.state.value}")
        if item.status == "managed":
            lines += [f"#   already managed by this state as {item.address}; nothing to do.", ""]
            continue
        refusal = _refusal(item)
        declared = config.keys.get(item.address or "")
        if refusal is None and declared is not None:
            lines.append(f"#   {item.address}: tagged by this state but not in state; keyplan holds its material.")
            if target not in declared.targets:
                lines.append(f"#   Add provider.{target} to the `targets` of {item.address}, then import it.")
        else:
            lines.append(f"#   {refusal or 'tagged by this state but not in state; keyplan holds its material'}.")
            name = _block_name(item, taken)
            address = item.address or f"key.{name}"
            source = state.keys[address].source if address in state.keys else default_source
            block = _key_block(name, key, source, target, item.address)
            lines += block if refusal is None else ["# " + line if line else "#" for line in block]
        address = item.address or f"key.{_block_name(item, set())}"
        command = f"keyplan import {_quote_shell(address)} {target} {_quote_shell(key.remote_id)}"
        commands.append(command if refusal is None else f"{command}  # refused: {refusal.split(':')[0]}")
        lines.append("")
    lines.append("# Then bring the keys under management without replacing them:")
    lines += [f"#   {c}" for c in commands] or ["#   (nothing to import)"]
    # Remote ids, tags and descriptions come from the cloud: none may start a line of its own
    # (which would turn a comment into configuration) or reach the terminal as a control.
    return "\n".join(for_terminal(line) for line in lines) + "\n"


def _refusal(item: Discovered) -> str | None:
    """Why `keyplan import` would refuse this key, or None when it can take it."""
    if item.status == "other":
        return f"managed by another keyplan state ({item.key.managed_by}); import is refused while it is"
    if not item.holds_material:
        return (
            "keyplan does not hold this key's material: with bring-your-own-key the material must come from a "
            "keyplan key source, and state has no material version for it"
        )
    if item.key.algorithm is None:
        return "its algorithm is not one keyplan imports"
    return None


def _key_block(name: str, key: RemoteKey, source: str, target: str, address: str | None) -> list[str]:
    block = []
    if address and "[" in address:
        instance = address.split("[", 1)[1].rstrip("]")
        block.append(f"# instance {instance} of key \"{name}\": add {instance} to that block's for_each instead")
    block += [f'key "{name}" {{']
    block.append(f"  algorithm = {_hcl_string(key.algorithm or 'UNKNOWN')}")
    block.append(f"  source    = source.{source}")
    block.append(f"  targets   = [provider.{target}]")
    if key.description:
        block.append(f"  description = {_hcl_string(key.description)}")
    if key.aliases:
        block.append(f"  aliases   = [{', '.join(_hcl_string(a) for a in key.aliases)}]")
    if not key.enabled and key.state is not KeyState.PENDING_IMPORT:
        block.append("  enabled   = false")
    if key.labels:
        block.append("  labels = {")
        block += [f"    {_hcl_key(k)} = {_hcl_string(v)}" for k, v in sorted(key.labels.items())]
        block.append("  }")
    if key.expires_at is not None:
        block.append(f"  # its material expires at {key.expires_at.isoformat(timespec='seconds')}")
    block.append("}")
    return block
