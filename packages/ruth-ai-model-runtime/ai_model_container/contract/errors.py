"""The one exception type that carries a contract error code to the response."""

from __future__ import annotations

from ai_model_container.contract.schema import ErrorCode


class RequestError(Exception):
    """A request failed for a reason the contract names.

    Raised anywhere below the service (frame reader, handler, limits) and
    turned into an error response by the service, never past it.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
