"""Shared ground for every system: errors, hashing, clocks, progress, registries. Imports nothing heavy."""

from aisd.core.errors import (
    AisdError,
    ConflictError,
    CorruptDataError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedError,
)

__all__ = [
    "AisdError",
    "ConflictError",
    "CorruptDataError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "NotFoundError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnsupportedError",
]
