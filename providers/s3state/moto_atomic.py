"""moto's S3 server with S3's atomic conditional writes, for tests and benchmarks.

moto checks `If-Match` / `If-None-Match: *` and then stores the object in a second step, with
nothing between them; two writes racing within microseconds can both pass, where S3 lets only
the first finish and answers the other 412 (or 409). keyplan's state locks, compare-and-swap
and audit trail rely on that rule, so a test against plain moto could pass or fail by luck.
Here every request that may change something runs alone (reads still run at once), which makes
each conditional write atomic, as in S3: `python -m providers.s3state.moto_atomic -p PORT`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

READS = ("GET", "HEAD", "OPTIONS")


class OneWriteAtATime:
    """WSGI middleware: requests other than reads run one at a time, their whole answer made
    under the lock."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") in READS:
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, OneWriteAtATime(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
