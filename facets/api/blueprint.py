"""The org-scoped blueprint and what its operations share: path docs, auth, error docs."""

from __future__ import annotations

import contextlib
from http import HTTPStatus

import flask_smorest

from facets.api.schemas import APIErrorPayloadSchema
from facets.edge.auth import current_principal, prefetched_access
from facets.edge.org_writes import admitted
from facets.extensions import state
from facets.json import JsonBodyParser
from models import Access
from models.access import read_access
from models.services.common import lock_access


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


def documents_errors(*statuses: int):
    """Document each status as an ``APIErrorPayload`` response of the operation.

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
            )(documented)
        view._apidoc = documented._apidoc
        return view

    return decorator


def caller_access(org: str) -> Access:
    """The authenticated caller's access to ``org``.

    The first call of a request may be answered by what authentication read with the API key
    (``prefetched_access``); any later call reads again.

    :raise NotFound: no such org (404).
    :raise Forbidden: the caller is not a member (403).
    """
    user_id = current_principal().user_id
    access = prefetched_access(org, user_id)
    if access is not None:
        return access
    return read_access(state().db, org, user_id)


def as_caller(org: str, service, **kwargs):
    """Run one service function for the authenticated caller in its own unit of work.

    The caller's access is checked first (``lock_access``: a stranger is refused without
    queueing for the org, and takes none of its places for writes in flight,
    ``facets.edge.org_writes``, past which a member gets a 429), and again under the org lock
    by the write itself, so it cannot change between the check and the write it allows.
    """
    with contextlib.ExitStack() as place:  # given back after the commit and its hooks
        with state().unit_of_work() as uow:
            access = lock_access(uow, org_slug=org, user_id=current_principal().user_id)
            place.enter_context(admitted(org))  # only a member takes one
            return service(uow, access=access, **kwargs)
