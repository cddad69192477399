"""The one error envelope (the spec's ``APIErrorPayload``) for every non-2xx response.

Domain errors, webargs validation errors, ``abort``, werkzeug's 404/405/413 and unhandled
exceptions all leave through ``register_error_handlers``; nothing else shapes an error body.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from flask import Flask, current_app, g, jsonify
from werkzeug.exceptions import HTTPException

from models.errors import DomainError, Timeout
from models.session import is_time_limit

log = logging.getLogger(__name__)

TYPE_BY_STATUS = {
    400: "invalid_error",
    401: "authentication_error",
    403: "forbidden_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "validation_error",
    426: "upgrade_required_error",
    429: "usage_limit_exceeded_error",
    500: "server_error",
    502: "bad_gateway_error",
    504: "gateway_timeout_error",
}

# marshmallow's default messages, mapped to the machine-readable ``ValidationErrorItem.type``.
ITEM_TYPE_BY_MESSAGE = {
    "Missing data for required field.": "missing",
    "Unknown field.": "unknown_field",
    "Field may not be null.": "null",
    "Invalid input type.": "type_error",
    "Not a valid UUID.": "uuid_parsing",
    "Not a valid integer.": "int_parsing",
    "Not a valid string.": "string_type",
}


class HTTPError(DomainError):
    """A domain error that also sets response headers (e.g. ``WWW-Authenticate``)."""

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.headers = dict(headers or {})


def error_type(status: int) -> str:
    """The envelope ``type`` for a status that has no more specific one."""
    return TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_error")


def envelope_body(
    status: int,
    detail: str,
    type_: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The error envelope's fields."""
    body: dict[str, Any] = {"code": status, "detail": detail, "type": type_ or error_type(status)}
    if errors is not None:
        body["errors"] = errors
    return body


def envelope(
    status: int,
    detail: str,
    type_: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
):
    """A JSON response carrying the error envelope."""
    response = jsonify(envelope_body(status, detail, type_, errors))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_items(messages: Any, loc: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
    """Flatten webargs/marshmallow messages into ``ValidationErrorItem`` dicts."""
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            yield from validation_items(value, loc if key == "_schema" else (*loc, key))
    elif isinstance(messages, list | tuple) and all(isinstance(m, str) for m in messages):
        for msg in messages:
            yield {
                "loc": list(loc),
                "msg": msg,
                "type": ITEM_TYPE_BY_MESSAGE.get(msg, "value_error"),
            }
    elif isinstance(messages, list | tuple):
        for value in messages:
            yield from validation_items(value, loc)
    else:
        msg = str(messages)
        yield {"loc": list(loc), "msg": msg, "type": ITEM_TYPE_BY_MESSAGE.get(msg, "value_error")}


def _describe(items: list[dict[str, Any]]) -> str:
    parts = [
        f"{'.'.join(map(str, item['loc'][1:] or item['loc']))}: {item['msg']}" for item in items
    ]
    return "Invalid request: " + "; ".join(parts)


def handle_http_exception(error: HTTPException):
    """werkzeug/flask-smorest HTTP errors, webargs validation included."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    messages = data.get("messages")
    if messages is not None:
        items = list(validation_items(messages))
        if status == 400:  # webargs' malformed JSON body
            return envelope(400, "Malformed JSON body.", "invalid_error", headers=headers)
        return envelope(status, _describe(items), errors=items, headers=headers)
    if status == 404:
        detail = "No such endpoint."
    elif status == 405:
        detail = "Method not allowed on this endpoint; see the Allow header."
    elif status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        detail = f"The request body is larger than the {limit} bytes this API accepts."
    else:
        detail = data.get("message") or error.description or HTTPStatus(status).phrase
    return envelope(status, detail, headers=headers)


def handle_domain_error(error: DomainError):
    """Errors the service layer raises for callers."""
    return envelope(error.status, error.detail, error.type, headers=getattr(error, "headers", None))


def handle_unexpected(error: Exception):
    """Anything else: logged with the request id, answered without internals."""
    request_id = g.get("request_id", "-")
    if isinstance(error, DBAPIError) and is_time_limit(error):
        log.warning("database time limit hit (request %s)", request_id)
        return handle_domain_error(
            Timeout(
                "The database did not answer in time (another transaction holds a lock this "
                "request needs, or it is overloaded); retry shortly."
            )
        )
    if isinstance(error, OperationalError | PoolTimeoutError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        log.error("database unreachable (request %s): %s", request_id, type(error).__name__)
        return envelope(500, "The database is unavailable; try again shortly.", "database_error")
    log.exception("unhandled error (request %s)", request_id)
    return envelope(500, f"Internal server error (request id {request_id}).", "server_error")


def register_error_handlers(app: Flask) -> None:
    """Route every error to the envelope."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(Exception, handle_unexpected)
