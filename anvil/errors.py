"""A shallow error hierarchy; each subclass means a different reaction. Mapped to HTTP in api/problems.py."""

from __future__ import annotations

from typing import Any


class AnvilError(Exception):
    status_code = 500
    title = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class NotFound(AnvilError):
    status_code = 404
    title = "Not found"


class Conflict(AnvilError):
    status_code = 409
    title = "Conflict"


class InvalidTransition(Conflict):
    title = "Invalid state transition"


class InvalidInput(AnvilError):
    status_code = 422
    title = "Invalid input"


class Forbidden(AnvilError):
    status_code = 403
    title = "Forbidden"


class Unauthorized(AnvilError):
    status_code = 401
    title = "Unauthorized"


class TooManyRequests(AnvilError):
    """Refused for a while (a login lockout); ``retry_after_s`` says how long."""

    status_code = 429
    title = "Too many requests"
