"""Google's error answer: `{"error": {"code": <http>, "message": ..., "status": <CANONICAL_CODE>}}`,
never with a request body in it."""

from __future__ import annotations

from providers.emulation.app import Response
from providers.emulation.errors import CloudError


class ApiError(CloudError):
    """A Google API error: HTTP status, canonical code and message (never a request body)."""

    def __init__(self, http: int, status: str, message: str) -> None:
        super().__init__(http, status, message)

    def response(self) -> Response:
        return Response.json(
            {"error": {"code": self.status, "message": self.message, "status": self.code}},
            status=self.status,
            content_type="application/json; charset=UTF-8",
        )


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def precondition(message: str) -> ApiError:
    return ApiError(400, "FAILED_PRECONDITION", message)


def not_found(name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{name} not found.")


FAULT_STATUSES = {
    429: ("RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests' of service 'cloudkms.googleapis.com'."),
    500: ("INTERNAL", "Internal error encountered."),
    502: ("UNAVAILABLE", "Bad gateway."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request deadline was exceeded."),
}
