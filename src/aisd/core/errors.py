"""One exception tree for the whole stack; each error knows its HTTP status and OpenAI error shape.

The server turns any AisdError into ``{"error": {"message", "type", "param", "code"}}`` with ``status_code``
(the body OpenAI's API returns), so the official clients raise the matching exception class.
"""

from __future__ import annotations

from typing import Any


class AisdError(Exception):
    """Base of every error aisd raises on purpose. Subclasses set the HTTP status and OpenAI error type."""

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """OpenAI-shaped error body."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param,
                          "code": self.code}}


class InvalidRequestError(AisdError, ValueError):
    """Malformed input: the message names the field (``param``) and what was expected."""

    status_code = 400
    error_type = "invalid_request_error"


class NotFoundError(AisdError, KeyError):
    """A named thing (collection, experiment, feature view, model ...) does not exist."""

    status_code = 404
    error_type = "not_found_error"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class ModelNotFoundError(NotFoundError):
    """An unknown model name or a model file that is missing on disk."""

    error_type = "model_not_found"


class ConflictError(AisdError):
    """The request conflicts with stored state (already exists, wrong dimension for a collection ...)."""

    status_code = 409
    error_type = "conflict_error"


class RateLimitError(AisdError):
    """Too many requests or a full queue; ``headers`` carries Retry-After."""

    status_code = 429
    error_type = "rate_limit_error"


class UnsupportedError(AisdError):
    """A valid request for something this build does not do (an architecture, a tensor type ...)."""

    status_code = 422
    error_type = "unsupported_error"


class CorruptDataError(AisdError):
    """Stored data failed a checksum or could not be parsed; the message says which file and where."""

    status_code = 500
    error_type = "corrupt_data_error"


class ServiceUnavailableError(AisdError):
    """A dependency (a backend, a server, an optional package or model) is not available right now."""

    status_code = 503
    error_type = "service_unavailable"
