"""`endpoint = "embedded"`: the provider's cloud emulator started in this process on a loopback
port, its data kept under the run's data directory so keys survive between runs."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyplan.provider import RuntimeContext
    from providers.emulation.app import EmulatorApp
    from providers.emulation.server import EmulatorServer

# Embedded emulators of one run share a TLS certificate made on first start; starting them
# one at a time keeps two providers from writing it at once.
_START = threading.Lock()


class EmbeddedEmulator:
    """One embedded emulator, owned by the provider that started it."""

    def __init__(self, app: type[EmulatorApp], context: RuntimeContext) -> None:
        from keyplan.provider import ErrorKind, ProviderError
        from providers.emulation.server import start_embedded

        with _START:
            try:
                self.server: EmulatorServer = start_embedded(
                    app, context.data_dir, name=context.address.replace(".", "-")
                )
            except ValueError as refused:  # the emulator's test hooks, set in the environment
                raise ProviderError(
                    ErrorKind.FATAL,
                    "the embedded emulator's configuration is not valid",
                    f"{refused}. Correct or unset KEYPLAN_EMULATOR_FAULTS and KEYPLAN_EMULATOR_LATENCY_MS "
                    "(docs/quotas.md).",
                ) from None

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        self.server.app.store.close()
