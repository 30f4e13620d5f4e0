"""Serving an `EmulatorApp` on loopback over HTTP or HTTPS, with stats, faults and a clock."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import math
import os
import signal
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from random import Random
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyplan.testing.control import fetch_json as fetch_json  # the control protocol's client, for tests
from providers.emulation.app import EmulatorApp, Request, Response
from providers.emulation.clock import Clock
from providers.emulation.quotas import QuotaEnforcer
from providers.emulation.store import DocumentStore

# Seconds a new key or alias stays invisible in the realistic profile (the clouds say "usually
# less than a few seconds"). Listings lag by default; calls naming the key only when asked, since
# every such call answered NotFound would still count against the request quota.
REALISTIC_VISIBILITY_LAG = 0.0  # calls naming a new key find it at once unless asked otherwise
REALISTIC_LISTING_LAG = 3.0  # listings catch up last


@dataclass(frozen=True)
class Fault:
    """An injected failure: the status the cloud's own error body carries, and whether it comes
    instead of the work (the call was refused) or after it (the work was done, the answer lost)."""

    status: int
    after: bool = False


@dataclass
class FaultPlan:
    """Latency for every call and failures per operation. Each entry of `errors` is
    `{"operation": "CreateKey" | "*", "status": 503, "count": 2, "rate": 0.1, "after": false}`:
    it fails its next `count` matching calls, or with `rate` each matching call with that
    probability (while `count`, if also given, lasts); with `after` the emulator first does the
    work and then answers the failure, as when a response is lost on the way back. `seed` makes
    the random draws repeatable."""

    latency_ms: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    random: Random = field(default_factory=Random)

    def configure(self, payload: dict[str, Any]) -> None:
        with self.lock:
            if "latency_ms" in payload:
                self.latency_ms = float(payload["latency_ms"])
            if "errors" in payload:
                self.errors = [dict(e) for e in payload["errors"]]
            if "seed" in payload:
                self.random.seed(payload["seed"])

    def take(self, operation: str) -> Fault | None:
        with self.lock:
            for entry in self.errors:
                if entry.get("operation", "*") not in ("*", operation):
                    continue
                if "rate" in entry:
                    if entry.get("count", 1) <= 0 or self.random.random() >= float(entry["rate"]):
                        continue
                elif entry.get("count", 1) <= 0:
                    continue
                if "count" in entry or "rate" not in entry:
                    entry["count"] = entry.get("count", 1) - 1
                return Fault(status=int(entry.get("status", 503)), after=bool(entry.get("after", False)))
        return None

    def take_error(self, operation: str) -> int | None:
        fault = self.take(operation)
        return fault.status if fault is not None else None


def _number(payload: dict[str, Any], name: str, low: float, high: float, *, above: bool = False) -> None:
    if name not in payload:
        return
    value = payload[name]
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(number) and (number > low if above else number >= low) and number <= high):
        bound = f"a positive number, at most {high:g}" if above and low == 0 else f"a number from {low:g} to {high:g}"
        raise ValueError(f"{name} must be {bound}")


def check_configuration(payload: object) -> None:
    """What `configure` accepts, checked whole before anything changes: `ValueError` says what is
    wrong (a scale of 0 divided by zero at the first throttled call, a negative one throttled forever)."""
    if not isinstance(payload, dict):
        raise ValueError("an emulator configuration is a JSON object")
    _number(payload, "latency_ms", 0, 60_000)
    _number(payload, "quota_scale", 0, 1e6, above=True)
    _number(payload, "visibility_lag", 0, 86_400)
    _number(payload, "listing_lag", 0, 86_400)
    if payload.get("profile", "default") not in ("default", "realistic"):
        raise ValueError('profile is "default" or "realistic"')
    errors = payload.get("errors", [])
    if not isinstance(errors, list) or not all(isinstance(entry, dict) for entry in errors):
        raise ValueError('errors is a list of objects like {"operation": "CreateKey", "status": 503, "count": 2}')
    for entry in errors:
        _number(entry, "status", 100, 599)
        _number(entry, "count", 0, 1e12)
        _number(entry, "rate", 0, 1)
    crash = payload.get("crash")
    if crash is not None:
        if not isinstance(crash, dict):
            raise ValueError('crash is {"at": N >= 1, "when": "before" | "after"}')
        _number(crash, "at", 1, 1e12)


def latency_from_environment() -> float | None:
    """`KEYPLAN_EMULATOR_LATENCY_MS`, checked; None when unset."""
    text = os.environ.get("KEYPLAN_EMULATOR_LATENCY_MS")
    if not text:
        return None
    try:
        latency = float(text)
    except ValueError:
        latency = math.nan
    try:
        check_configuration({"latency_ms": latency})
    except ValueError:
        raise ValueError("KEYPLAN_EMULATOR_LATENCY_MS must be a number of milliseconds from 0 to 60000") from None
    return latency


def faults_from_environment(name: str) -> dict[str, Any] | None:
    """The configuration `KEYPLAN_EMULATOR_FAULTS` gives the embedded emulator `name` (a JSON
    object per emulator name), checked; `ValueError` says what is wrong with it."""
    text = os.environ.get("KEYPLAN_EMULATOR_FAULTS") or "{}"
    try:
        every = json.loads(text)
    except ValueError:
        raise ValueError("KEYPLAN_EMULATOR_FAULTS is not JSON") from None
    if not isinstance(every, dict):
        raise ValueError('KEYPLAN_EMULATOR_FAULTS is a JSON object of emulator names, e.g. {"aws-main": {...}}')
    faults = every.get(name)
    if faults is None:
        return None
    try:
        check_configuration(faults)
    except ValueError as refused:
        raise ValueError(f"KEYPLAN_EMULATOR_FAULTS[{name!r}]: {refused}") from None
    return dict(faults)


class CrashPoint:
    """A test hook for crash suites: the process serving the emulator dies (SIGKILL) at the
    `at`-th API call it receives, `before` the emulator does the work or `after` it did it (the
    answer never sent). An embedded emulator runs inside keyplan, so this kills keyplan at an
    exact remote call. The count spans every server sharing the point (each keyplan run opens
    its embedded emulators once to plan and once to apply)."""

    def __init__(self, at: int, when: str) -> None:
        if when not in ("before", "after") or at < 1:
            raise ValueError('a crash point is {"at": N >= 1, "when": "before" | "after"}')
        self.at = at
        self.when = when
        self._calls = 0
        self._lock = threading.Lock()

    def count(self) -> int:
        """This call's number, from 1."""
        with self._lock:
            self._calls += 1
            return self._calls

    def reached(self, call: int, when: str) -> bool:
        return call == self.at and when == self.when

    @staticmethod
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)


_crash_points: dict[str, CrashPoint] = {}  # per embedded emulator name, for this process


def ensure_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost, made once per data directory."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "emulator-cert.pem", directory / "emulator-key.pem"
    # Emulators starting together (several vaults, several processes) must agree on one pair.
    with open(directory / ".emulator-cert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.exists() and key_path.exists()):
            _write_certificate(cert_path, key_path)
    return cert_path, key_path


def _write_certificate(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyplan emulator")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class EmulatorServer:
    """Serves one app on 127.0.0.1; `url` is where the real SDK should point."""

    def __init__(self, app: EmulatorApp, *, port: int = 0, cert_dir: Path | None = None) -> None:
        self.app = app
        self.faults = FaultPlan()
        self.quotas: QuotaEnforcer | None = None  # the realistic profile, when configured
        self.stats: Counter[str] = Counter()
        self.crash_point: CrashPoint | None = None  # test hook (KEYPLAN_EMULATOR_FAULTS "crash")
        self._stats_lock = threading.Lock()
        self.ca_cert: Path | None = None
        handler = self._handler_class()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        if app.tls:
            cert, key = ensure_certificate(cert_dir or Path(".keyplan/emulators"))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert), str(key))
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self.ca_cert = cert
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.app.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        # A short poll interval: stop() waits for the serving loop to notice, once per keyplan run.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.app.name}-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            # The serving loop looks for a stop between requests, every poll interval when idle: a
            # connection of our own (closed at once, so never a request) wakes it now instead.
            stopping = threading.Thread(target=self._httpd.shutdown, name=f"{self.app.name}-emulator-stop")
            stopping.start()
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            stopping.join()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch -------------------------------------------------------------------------------

    def configure(self, payload: dict[str, Any]) -> None:
        """Faults and latency (see FaultPlan), and the profile: `{"profile": "realistic",
        "quota_scale": 10}` enforces the cloud's documented quotas (scaled) and hides new keys
        and aliases from calls naming them for `visibility_lag` seconds (default 0) and from
        listings for `listing_lag` seconds (default 3), `"default"` neither. A value out of its
        range is refused with `ValueError` before anything changes."""
        check_configuration(payload)
        self.faults.configure(payload)
        if payload.get("profile") == "realistic":
            scale = float(payload.get("quota_scale", 1.0))
            self.quotas = QuotaEnforcer(self.app.quota_classes(), scale=scale, window=self.app.quota_window)
            self.app.visibility.lag = float(payload.get("visibility_lag", REALISTIC_VISIBILITY_LAG))
            self.app.visibility.listing_lag = float(payload.get("listing_lag", REALISTIC_LISTING_LAG))
        elif payload.get("profile") == "default":
            self.quotas = None
            self.app.visibility.lag = self.app.visibility.listing_lag = 0.0
        if "visibility_lag" in payload:
            self.app.visibility.lag = float(payload["visibility_lag"])
        if "listing_lag" in payload:
            self.app.visibility.listing_lag = float(payload["listing_lag"])

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_emulator/"):
            return self._control(request)
        operation = self.app.operation(request)
        with self._stats_lock:
            self.stats[operation] += 1
        crash = self.crash_point
        call = crash.count() if crash is not None else 0
        if crash is not None and crash.reached(call, "before"):
            crash.die()
        answer = self._answer(request, operation)
        if crash is not None and crash.reached(call, "after"):
            crash.die()  # the work is done (and stored); its answer never leaves
        return answer

    def _answer(self, request: Request, operation: str) -> Response:
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000.0)
        if self.quotas is not None:
            rate_class = self.quotas.class_of(operation)
            cost = self.app.quota_cost(request, operation, rate_class) if rate_class else 1.0
            wait = self.quotas.admit(operation, cost)
            if wait is not None:
                answer = self.app.fault_response(request, 429)
                if "Retry-After" in answer.headers:
                    answer.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                return answer
        fault = self.faults.take(operation)
        if fault is None:
            return self.app.handle(request)
        if fault.after:
            self.app.handle(request)  # the work is done; its answer is lost
        return self.app.fault_response(request, fault.status)

    def _control(self, request: Request) -> Response:
        path = request.path
        if path == "/_emulator/stats" and request.method == "GET":
            with self._stats_lock:
                calls = dict(self.stats)
            throttled = dict(self.quotas.throttled) if self.quotas is not None else {}
            spent = dict(self.quotas.spent) if self.quotas is not None else {}
            quotas = self.quotas.describe() if self.quotas is not None else {}
            return Response.json(
                {"calls": calls, "total": sum(calls.values()), "throttled": throttled, "spent": spent, "quotas": quotas}
            )
        if path == "/_emulator/stats/reset" and request.method == "POST":
            with self._stats_lock:
                self.stats.clear()
            if self.quotas is not None:
                self.quotas.reset_counts()
            return Response.json({})
        if path == "/_emulator/faults" and request.method == "POST":
            try:
                self.configure(request.json())
            except (ValueError, TypeError) as exc:
                return Response.json({"error": str(exc)}, status=400)
            return Response.json({"latency_ms": self.faults.latency_ms, "errors": self.faults.errors})
        if path == "/_emulator/clock":
            if request.method == "POST":
                self.app.clock.advance(float(request.json().get("advance_seconds", 0)))
                self.app.store.set_meta("clock_offset", str(self.app.clock.offset_seconds))
            return Response.json(
                {"now": self.app.clock.now().isoformat(), "offset_seconds": self.app.clock.offset_seconds}
            )
        if path == "/_emulator/materials" and request.method == "GET":
            return Response.json({"materials": self.app.material_fingerprints()})
        if path == "/_emulator/swap-material" and request.method == "POST":
            body = request.json()
            swapped = self.app.swap_material(str(body.get("key", "")), body.get("version"))
            if swapped is None:
                return Response.json({"error": "no such imported material"}, status=404)
            return Response.json({"fingerprint": swapped})
        return Response.json({"error": f"no control endpoint {request.method} {path}"}, status=404)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes; without TCP_NODELAY the body waits for the
            # client's delayed ACK (~40 ms per call).
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    target=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                try:
                    response = server.dispatch(request)
                except Exception as exc:  # an emulator bug: answer 500 like a cloud would
                    response = Response.json({"error": f"emulator failure: {type(exc).__name__}: {exc}"}, status=500)
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

        return Handler


def start_embedded(app_factory: type[EmulatorApp], data_dir: Path, name: str) -> EmulatorServer:
    """Start an emulator in this process on a free loopback port, persisted in
    `<data_dir>/emulators/<name>.sqlite` so keys survive between keyplan runs."""
    # Test and benchmark hooks: latency for every embedded emulator, faults per emulator name
    # (checked first: a ValueError says what is wrong, and nothing was started).
    latency = latency_from_environment()
    faults = faults_from_environment(name)
    directory = data_dir / "emulators"
    store = DocumentStore(directory / f"{name}.sqlite")
    clock = Clock(float(store.get_meta("clock_offset") or 0.0))
    app = app_factory(store, clock)
    server = EmulatorServer(app, cert_dir=directory)
    if latency is not None:
        server.configure({"latency_ms": latency})
    if faults:
        server.configure(faults)
        if "crash" in faults:
            crash = faults["crash"]
            point = _crash_points.setdefault(name, CrashPoint(int(crash["at"]), str(crash.get("when", "before"))))
            server.crash_point = point
    return server.start()
