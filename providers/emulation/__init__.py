"""What every cloud emulator shares: a threaded HTTP(S) server on loopback, a SQLite document
store, a controllable clock, call statistics, latency and fault injection, a self-signed TLS
certificate, and the `/_emulator/*` control API tests and benchmarks use.

A cloud emulator is an `EmulatorApp`: it turns one `Request` into one `Response` using its
cloud's wire format and rules. `EmulatorServer` serves it; `start_embedded` runs it in-process
for `endpoint = "embedded"`.

Control API (JSON, on every emulator, no auth):
- `GET  /_emulator/stats`: `{"calls": {"Operation": n, ...}, "total": n}`
- `POST /_emulator/stats/reset`
- `POST /_emulator/faults`: `{"latency_ms": 20, "seed": 7, "errors": [{"operation": "X", "status": 503, "count": 2}]}`;
  an error entry may instead carry `"rate": 0.1` (each matching call fails with that probability)
  and `"after": true` (the emulator does the work, then answers the failure: a lost answer);
  `{"profile": "realistic", "quota_scale": 1}` enforces the cloud's documented request quotas
  with its own throttling answer (providers/emulation/quotas.py), `"default"` turns that off
- `POST /_emulator/clock`: `{"advance_seconds": 86400}`; `GET /_emulator/clock`
- `GET  /_emulator/materials`: what the emulator unwrapped and holds, as fingerprints only
"""

from providers.emulation.app import EmulatorApp, Request, Response
from providers.emulation.clock import Clock
from providers.emulation.server import EmulatorServer, start_embedded
from providers.emulation.store import DocumentStore

__all__ = ["Clock", "DocumentStore", "EmulatorApp", "EmulatorServer", "Request", "Response", "start_embedded"]
