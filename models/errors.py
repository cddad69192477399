"""Domain errors raised by the service layer; each carries its HTTP status and error type.

``facets.errors`` turns them into the API's error envelope; nothing here knows about HTTP
beyond those two numbers.
"""

from __future__ import annotations


class DomainError(Exception):
    """A failure the caller caused and can fix."""

    status = 400
    type = "invalid_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    status = 404
    type = "not_found_error"


class Forbidden(DomainError):
    status = 403
    type = "forbidden_error"


class Conflict(DomainError):
    status = 409
    type = "conflict_error"


class AlreadyExists(DomainError):
    status = 409
    type = "already_exists_error"


class Invalid(DomainError):
    status = 400
    type = "invalid_error"


class Timeout(DomainError):
    """The database did not answer within the time this request may take; retry shortly."""

    status = 504
    type = "gateway_timeout_error"
    headers = {"Retry-After": "1"}
