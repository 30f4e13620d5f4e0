"""The emulator control protocol as a client calls it: one JSON request on an emulator's
`/_emulator/*` endpoints (materials, stats, faults, clock), over HTTPS when `ca` is given. The
conformance suites, the emulators' own tests and the benchmarks share it; it needs no pytest."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any


def fetch_json(url: str, method: str = "GET", payload: dict[str, Any] | None = None, ca: Path | None = None) -> Any:
    """One call on the emulator control protocol."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.loads(response.read() or b"{}")
