"""The one shape of an emulator's refusal: an exception that knows its cloud's wire answer.

Each cloud answers errors in its own format (KMS's `__type`, Google's `error.status`, Key
Vault's `error.code` + `innererror`); each emulator subclasses `CloudError` with that format,
and `EmulatorApp.answer` turns any `CloudError` raised by a route into its response.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from providers.emulation.app import Response


class CloudError(Exception, ABC):
    """A refusal in the cloud's own format; never carries a request body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @abstractmethod
    def response(self) -> Response:
        """The HTTP answer the cloud gives for this error."""
