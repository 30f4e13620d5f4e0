"""Values from configuration or a cloud, escaped for the medium they are shown in.

A label, description, `for_each` key or remote id is data, never markup: on a terminal its
control characters (escape sequences, bell, carriage returns, newlines that would fake a line,
bidirectional overrides) are shown as `\\x1b`-style escapes; in Markdown it is shown as literal
text that cannot open or close a code block, a table cell, an HTML element or a heading.
JSON output needs nothing more than the json module, which escapes every control character.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the invisible characters that reorder or hide text (bidi
# embeddings, overrides and isolates, line and paragraph separators, zero-width joiners).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_UNSAFE_KEEPING_LINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def for_terminal(value: object) -> str:
    """One value on one terminal line: every control or invisible character shown escaped."""
    return _UNSAFE.sub(_visible, str(value))


def for_terminal_lines(text: str) -> str:
    """A message made of lines (a diagnostic's detail): newlines kept, every other control escaped."""
    return _UNSAFE_KEEPING_LINES.sub(_visible, text)


# Characters left as they are in Markdown text: letters, digits, spaces and punctuation with no
# meaning in CommonMark, GFM tables or HTML on their own (brackets make a link only with a
# following parenthesis or a definition, which cannot be written here). Everything else
# becomes a numeric character reference, which Markdown shows literally and never parses as
# syntax; `:` too, so no text becomes an autolink.
_MARKDOWN_PLAIN = re.compile(r'[^\w .,/=@%+\-"\[\]]|_', re.ASCII)


def for_markdown(value: object) -> str:
    """A value as literal Markdown inline text: safe in a table cell, a heading, a `<summary>`
    or inside `<code>`; newlines and controls are shown escaped, never interpreted."""
    text = for_terminal(value)
    return _MARKDOWN_PLAIN.sub(lambda m: f"&#{ord(m.group())};", text)


def markdown_code(value: object) -> str:
    """A value shown in a monospace inline element, as literal text."""
    return f"<code>{for_markdown(value)}</code>"


def markdown_fence(body: str) -> str:
    """The backtick fence for a code block holding `body`: longer than any backtick run in it,
    so the body cannot close the block."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)
