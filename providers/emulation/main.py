"""`serve_main`: the command line every emulator's `python -m providers.<cloud>.emulator` runs."""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

from providers.emulation.app import EmulatorApp
from providers.emulation.clock import Clock
from providers.emulation.server import EmulatorServer
from providers.emulation.store import DocumentStore

AppFactory = Callable[[argparse.Namespace], type[EmulatorApp]]


def embedded_database(kind: str, name: str) -> str:
    """The database file of the emulator of `provider "KIND" "NAME"`: the same name whether keyplan
    embeds it (`endpoint = "embedded"`) or `keyplan emulator KIND --name NAME` serves it."""
    return f"{kind}-{name}.sqlite"


def serve_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    kind: str,
    app: AppFactory,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Serve one emulator until interrupted. The first line of stdout is its URL; an emulator
    on TLS prints the path of its CA certificate as `ca-cert: PATH` on the second."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--data-dir", type=Path, required=True, help="directory for the emulator's database")
    parser.add_argument(
        "--name",
        default="main",
        help=f"the database is <data-dir>/{kind}-<name>.sqlite, the file keyplan's embedded emulator of "
        f'`provider "{kind}" "<name>"` keeps in .keyplan/emulators',
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every API call")
    parser.add_argument(
        "--profile",
        choices=["default", "realistic"],
        default="default",
        help="realistic: enforce the cloud's documented request quotas with its own throttling answer",
    )
    parser.add_argument("--quota-scale", type=float, default=1.0, help="multiply every quota (realistic profile)")
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="make what the cloud holds before anyone calls it (wrapping keys) before serving, instead of on first "
        "use or, with the realistic profile, in the background: the first calls then take as long as later ones",
    )
    if arguments is not None:
        arguments(parser)
    args = parser.parse_args(argv)
    store = DocumentStore(args.data_dir / embedded_database(kind, args.name))
    clock = Clock(float(store.get_meta("clock_offset") or 0.0))
    server = EmulatorServer(app(args)(store, clock), port=args.port, cert_dir=args.data_dir)
    server.configure({"latency_ms": args.latency_ms, "profile": args.profile, "quota_scale": args.quota_scale})
    if args.prepare:
        server.app.prepare()
    elif args.profile == "realistic":
        threading.Thread(target=server.app.prepare, name="emulator-prepare", daemon=True).start()
    # Served from a thread of its own; this one only waits for the interrupt (SIGINT, or SIGTERM and
    # SIGHUP under `keyplan emulator`). An interrupt raised inside the serving loop could land in
    # its `except Exception` while it starts a request's thread, and be swallowed with the server
    # still running.
    server.start()
    print(server.url, flush=True)
    if server.ca_cert is not None:
        print(f"ca-cert: {server.ca_cert}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        server.stop()
        store.close()
    return 0
