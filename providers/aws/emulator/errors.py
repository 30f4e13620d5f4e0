"""KMS's error answer: HTTP 400 (or the status given) with `{"__type": <Code>, "message": ...}`."""

from __future__ import annotations

from providers.emulation.app import Response
from providers.emulation.errors import CloudError

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


class KmsError(CloudError):
    """An error answered in KMS's wire format."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(status, code, message)

    def response(self) -> Response:
        return Response.json(
            {"__type": self.code, "message": self.message}, status=self.status, content_type=JSON_CONTENT_TYPE
        )


def validation(message: str) -> KmsError:
    return KmsError("ValidationException", message)
