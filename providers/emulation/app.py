"""The interface a cloud emulator implements: one request in, one response out."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keyplan.limits import RateClass
from providers.emulation.clock import Clock
from providers.emulation.store import DocumentStore
from providers.emulation.visibility import Visibility


@dataclass
class Request:
    method: str
    target: str  # raw path with query string
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def query_one(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, content_type: str = "application/json") -> Response:
        return cls(status=status, body=json.dumps(payload).encode(), headers={"Content-Type": content_type})


class EmulatorApp(ABC):
    """A cloud's API over a `DocumentStore` and a `Clock`."""

    name: str = "emulator"
    tls: bool = False  # Azure needs HTTPS; AWS and GCP speak plain HTTP to local endpoints

    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.visibility = Visibility(clock.now)  # lag of new resources (realistic profile)

    @abstractmethod
    def operation(self, request: Request) -> str:
        """The cloud operation this request calls (for stats and fault matching)."""

    @abstractmethod
    def handle(self, request: Request) -> Response: ...

    @abstractmethod
    def fault_response(self, request: Request, status: int) -> Response:
        """The cloud's own error body for an injected fault (429 throttling, 500/503)."""

    quota_window: float = 1.0  # seconds of quota a bucket holds in the realistic profile

    def quota_classes(self) -> tuple[RateClass, ...]:
        """The cloud's documented request quotas, by this emulator's operation names."""
        return ()

    def quota_cost(self, request: Request, operation: str, rate_class: str) -> float:
        """Units of `rate_class`'s budget this call spends (1 unless the cloud weighs its calls)."""
        return 1.0

    def prepare(self) -> None:
        """Work the cloud has done before anyone calls it (long-lived wrapping keys), done ahead so
        that under the realistic profile the first calls are not slow for the emulator's own
        reasons. Runs in a background thread; requests that need its result wait for it."""
        return None

    def material_fingerprints(self) -> list[dict[str, Any]]:
        """Every imported material the emulator holds: `{"key": …, "version": …, "fingerprint": …}`."""
        return []

    def swap_material(self, key: str, version: str | None) -> str | None:
        """Test-only: replace the material of `key` (one of its versions, or the current one)
        with fresh material of the same type, as if changed behind keyplan's back, keeping every
        id. Returns the new material's fingerprint, or None when there is no such material."""
        return None
