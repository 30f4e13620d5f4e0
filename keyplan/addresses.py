"""Key addresses as users type them back.

A key of a `for_each` block has the address `key.NAME["EACH_KEY"]`, its key written as a JSON
string (`keyplan.config.keys`): control characters come out escaped (`\\u001b`), other characters
as they are. keyplan shows addresses escaped for the terminal (`keyplan.escaping`: `\\u202e` for a
bidirectional override, `\\x85` for a C1 control), so an address copied from its output may
spell a character differently from the one recorded. `canonical` reads the quoted part as a
string with those escapes and writes it back the way addresses are recorded.
"""

from __future__ import annotations

import json
import re

_INSTANCE = re.compile(r'(key\.[A-Za-z_][A-Za-z0-9_-]*)\[(".*")\]', re.DOTALL)
_ESCAPE = re.compile(r"\\(\\|x([0-9a-fA-F]{2}))")


def canonical(address: str) -> str:
    """`address` as keyplan records it; an address it cannot read is returned unchanged."""
    match = _INSTANCE.fullmatch(address)
    if match is None:
        return address
    quoted = _ESCAPE.sub(lambda m: "\\\\" if m.group(2) is None else f"\\u00{m.group(2)}", match.group(2))
    try:
        each_key = json.loads(quoted, strict=False)
    except ValueError:
        return address
    if not isinstance(each_key, str):
        return address
    return f"{match.group(1)}[{json.dumps(each_key, ensure_ascii=False)}]"
