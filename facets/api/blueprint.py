"""The org-scoped blueprint and what its operations share: path docs, auth, error docs."""

from __future__ import annotations

from http import HTTPStatus

import flask_smorest
import marshmallow as ma
from marshmallow import validate

from facets.api.schemas import APIErrorPayloadSchema
from facets.edge.auth import current_principal, prefetched_access, require_live_session
from facets.edge.org_writes import admitted
from facets.edge.server_errors import DETAILS as SERVER_DETAILS
from facets.errors import envelope_body
from facets.extensions import state
from facets.json import JsonBodyParser
from models import Access
from models.access import check_access, read_access


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's blueprint, its arguments parsed by ``JsonBodyParser``."""

    ARGUMENTS_PARSER = JsonBodyParser()


blp = Blueprint(
    "sandboxes",
    __name__,
    url_prefix="/api/v1/org/<org>",
    description="Sandboxes of an organization and their facet counts.",
)

ORG_PARAMETER = {
    "in": "path",
    "name": "org",
    "required": True,
    "description": "Organization slug",
    "schema": {"type": "string", "title": "Org", "description": "Organization slug"},
}
BEARER_SECURITY = [{"bearerAuth": []}]

ERROR_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Authentication failed",
    403: "Access forbidden",
    404: "Not found",
    409: "Already exists",
    422: "Validation error",
    426: "Upgrade required",
    429: "Rate limited",
    500: "Internal server error",
    502: "Bad gateway",
    504: "Gateway timeout",
}

# What the HTTP layer (the proxy, gunicorn, werkzeug) refuses before an operation runs, with
# the same envelope; every operation can meet them. A 405 answers a method a path has no
# operation for, so no operation documents it (README, API).
HTTP_LAYER_ERRORS = {
    413: "Request body too large (over MAX_CONTENT_LENGTH; the proxy refuses any request's)",
    414: "Request line too long",
    431: "Request headers too large or too many",
    501: "Transfer-Encoding not supported (send Content-Length or chunked)",
}


class HTTPErrorPayloadSchema(APIErrorPayloadSchema):
    """The API error envelope as the HTTP layer sends it: a status outside the spec's codes."""

    code = ma.fields.Integer(
        required=True,
        validate=validate.OneOf(sorted({405, *HTTP_LAYER_ERRORS})),
        metadata={"description": "HTTP status code"},
    )


# What the example of each documented status says (Swagger UI shows it): its own code and type.
ERROR_EXAMPLE_DETAILS = {
    400: "Malformed JSON body.",
    401: "Send 'Authorization: Bearer <API key or JWT>'.",
    403: "You are not a member of this organization.",
    404: "Organization 'acme' not found.",
    409: "This sandbox is killed; a killed sandbox cannot be changed.",
    413: "The request body is larger than 65536 bytes.",
    422: "Invalid request: state: Must be one of: running, paused, killed.",
    426: "Client version 1.0.0 is no longer supported; upgrade to version 2.0.0 or later.",
    429: (
        "Too many mutation requests from this caller (limit 20/second, 600/minute); "
        "retry after the number of seconds in the Retry-After header."
    ),
    500: "Internal server error (request id 0f8e2c1d).",
    502: "The gateway in front of the service got no valid answer from it.",
    504: "The database did not answer in time; retry shortly.",
}


def error_example(status: int) -> dict:
    """An ``APIErrorPayload`` example of ``status``: its code, its type, a typical detail."""
    detail = ERROR_EXAMPLE_DETAILS.get(status) or SERVER_DETAILS.get(status)
    detail = detail or HTTPStatus(status).phrase
    errors = None
    if status == 422:
        errors = [{"loc": ["query", "state"], "msg": detail.split(": ")[-1], "type": "value_error"}]
    return envelope_body(status, detail, errors=errors)


def documents_errors(*statuses: int):
    """Document each status as an ``APIErrorPayload`` response of the operation, and those of
    ``HTTP_LAYER_ERRORS`` as ``HTTPErrorPayload`` ones, each with an example of its own
    (``error_example``).

    ``alt_response`` wraps the view in one pass-through layer per status, there only to carry
    the documentation; the facets view documents eleven, which cost ~50 us per request. The
    documentation they build is kept on the view itself and the layers are dropped.
    """

    def decorator(view):
        documented = view
        for status in statuses:
            documented = blp.alt_response(
                status,
                schema=APIErrorPayloadSchema,
                description=ERROR_DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
                example=error_example(status),
            )(documented)
        for status, description in HTTP_LAYER_ERRORS.items():
            documented = blp.alt_response(
                status,
                schema=HTTPErrorPayloadSchema,
                description=description,
                example=error_example(status),
            )(documented)
        view._apidoc = documented._apidoc
        return view

    return decorator


def caller_access(org: str, read=read_access) -> Access:
    """The authenticated caller's access to ``org``.

    The first call of a request may be answered by what authentication read with the API key
    (``prefetched_access``); any later call reads again, with ``read`` (a write's first check
    passes ``check_access``).

    :raise NotFound: no such org (404).
    :raise Forbidden: the caller is not a member (403).
    :raise TokenError: the caller's JWT was issued before their sessions were revoked (401).
    """
    user_id = current_principal().user_id
    access = prefetched_access(org, user_id)
    if access is not None:
        return access
    return require_live_session(read(state().db, org, user_id))


def as_caller(org: str, service, **kwargs):
    """Run one service function for the authenticated caller in its own unit of work.

    The caller's access is checked first (what authentication already read with an API key,
    else ``check_access`` on the writer's engine: a stranger is refused without queueing for
    the org, and takes none of its places for writes in flight, ``facets.edge.org_writes``,
    past which a member gets a 429), and again under the org lock by the write itself, so it
    cannot change between the check and the write it allows. A write waiting for a place
    holds no database connection: its unit of work begins once it is admitted.
    """
    access = caller_access(org, check_access)
    alone = getattr(service, "one_statement", False)  # then the write commits as it ends
    with admitted(org), state().unit_of_work(one_statement=alone) as uow:  # place outlives hooks
        return service(uow, access=access, **kwargs)
