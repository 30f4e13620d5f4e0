"""Cloud KMS's REST wire format in the emulator: resource name patterns, timestamps, labels, list
filters and pages (request bodies are typed in `bodies`)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from providers.emulation.app import Request, Response
from providers.emulation.paging import offset_token, token_offset
from providers.gcp.emulator.errors import invalid
from providers.gcp.emulator.protos import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

LOCATION = r"projects/[^/]+/locations/[^/]+"
RING = LOCATION + r"/keyRings/[^/:]+"
KEY = RING + r"/cryptoKeys/[^/:]+"
VERSION = KEY + r"/cryptoKeyVersions/[^/:]+"
JOB = RING + r"/importJobs/[^/:]+"

RINGS, KEYS, VERSIONS, JOBS = "keyRings", "cryptoKeys", "cryptoKeyVersions", "importJobs"
Handler = Callable[[Request, str], Response]


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_duration(value: Any) -> timedelta:
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d+)?s", value):
        raise invalid(f'Invalid duration {value!r}: expected seconds such as "86400s".')
    return timedelta(seconds=float(value[:-1]))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _label_char(char: str, first: bool) -> bool:
    if first:
        return char.isalpha() and char.islower()
    return (char.isalpha() and char.islower()) or char.isdigit() or char in "_-"


def validate_labels(labels: Any) -> dict[str, str]:
    """Google's label rules: at most 64; keys 1-63 chars starting with a lowercase letter; values
    0-63 chars; lowercase letters, digits, `_` and `-` only."""
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise invalid("labels must map strings to strings.")
    if len(labels) > 64:
        raise invalid(f"A resource may carry at most 64 labels; this request has {len(labels)}.")
    for key, value in labels.items():
        if not 1 <= len(key) <= 63 or not all(_label_char(c, i == 0) for i, c in enumerate(key)):
            raise invalid(
                f"Label key {key!r} is invalid: keys are 1-63 lowercase letters, digits, '_' or '-', "
                "starting with a lowercase letter."
            )
        if len(value) > 63 or not all(_label_char(c, False) for c in value):
            raise invalid(
                f"Label value for key {key!r} is invalid: values are 0-63 lowercase letters, digits, '_' or '-'."
            )
    return dict(labels)


# ---------------------------------------------------------------------------------------------
# List filters (the subset of AIP-160 clients use on KMS: conjunctions of field comparisons)
# ---------------------------------------------------------------------------------------------

_TERM = re.compile(r'^\s*([A-Za-z_][\w.\-]*)\s*(!=|=|:)\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*$')


def compile_filter(text: str | None) -> Callable[[dict[str, Any]], bool]:
    if not text:
        return lambda resource: True
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.match(part)
        if not match:
            raise invalid(f"Invalid filter {text!r}: expected terms such as labels.env=prod joined by AND.")
        path, op, raw = match.groups()
        value = json.loads(raw) if raw.startswith('"') else raw
        terms.append((path.split("."), op, value))

    def matches(resource: dict[str, Any]) -> bool:
        for path, op, value in terms:
            found: Any = resource
            for step in path:
                found = found.get(step) if isinstance(found, dict) else None
            if op == ":" and value == "*":
                ok = found is not None
            elif op == "!=":
                ok = found is None or str(found) != value
            else:
                ok = found is not None and str(found) == value
            if not ok:
                return False
        return True

    return matches

def list_page(request: Request, items: list[dict[str, Any]], field: str, filtered: bool) -> dict[str, Any]:
    size_text = request.query_one("pageSize") or request.query_one("page_size") or "0"
    token = request.query_one("pageToken") or request.query_one("page_token") or ""
    try:
        size = int(size_text)
    except ValueError:
        raise invalid("pageSize must be an integer.") from None
    if size < 0:
        raise invalid("pageSize must not be negative.")
    size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = 0
    if token:
        try:
            start = token_offset(token)
        except ValueError:
            raise invalid("Invalid page token.") from None
    chunk = items[start : start + size]
    answer: dict[str, Any] = {}
    if chunk:
        answer[field] = chunk
    if start + size < len(items):
        answer["nextPageToken"] = offset_token(start + size)
    if not filtered:
        answer["totalSize"] = len(items)
    return answer
