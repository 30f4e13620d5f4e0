"""Key Vault's error answer: `{"error": {"code", "message", "innererror"}}`."""

from __future__ import annotations

from typing import Any

from providers.emulation.app import Response
from providers.emulation.errors import CloudError


class KeyVaultError(CloudError):
    """An error answered in Key Vault's shape; messages never quote request bodies."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(status, code, message)
        self.inner = inner

    def response(self) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return Response.json({"error": error}, status=self.status)


def bad_parameter(message: str) -> KeyVaultError:
    return KeyVaultError(400, "BadParameter", message)


def key_not_found(name: str) -> KeyVaultError:
    return KeyVaultError(
        404,
        "KeyNotFound",
        f"A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be "
        "able to recover it using the correct recovery command.",
    )
