"""``GET /api/v1/org/{org}/sandboxes/facets``: the tab badges and filter dropdowns, and the
waiting read that keeps them current (``?wait=`` with ``If-None-Match``)."""

from __future__ import annotations

import random
import time

from flask import Response, current_app, g, request
from werkzeug.http import quote_etag

from facets.api.blueprint import (
    BEARER_SECURITY,
    ERROR_DESCRIPTIONS,
    ORG_PARAMETER,
    blp,
    caller_access,
    documents_errors,
)
from facets.api.schemas import SandboxFacetsQueryArgsSchema, SandboxFacetsResponseSchema
from facets.counts.etag import CACHE_CONTROL, VERSION_HEADER
from facets.counts.read import FacetFilter, FacetsAnswer, answer_facets
from facets.edge.auth import login_required
from facets.extensions import state as facets_state
from facets.ops.metrics import FACETS_SERVED
from models import Access


@blp.route("/sandboxes/facets", methods=["GET"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(SandboxFacetsQueryArgsSchema(), location="query", as_kwargs=True)
@blp.response(200, SandboxFacetsResponseSchema, description="Successful Response")
@blp.alt_response(304, description="Not modified: the `If-None-Match` tag is still current.")
@documents_errors(*ERROR_DESCRIPTIONS)
@blp.doc(security=BEARER_SECURITY, operationId="get_sandbox_facets")
def get_sandbox_facets(org: str, state=None, project_id=None, wait=None):
    """Get sandbox facets

    Per-dimension counts for sandboxes the caller can see in this org. Every caller-supplied
    filter is applied to both facets, so counts reflect the sandboxes currently in view.
    Powers the tab badges and filter dropdowns on the Hosted Sandboxes page.

    A `project_id` the caller cannot see (or that does not exist) gives empty facets.
    Responses carry an `ETag`, a digest of what the caller's view shows: it changes only
    when the view does, not on changes the caller cannot see. Send it back in
    `If-None-Match` to get a 304 while the view is unchanged; add `wait` to have the request
    wait for a change instead (a `200` as soon as the view changes, else a `304` when the
    time is up). `X-Facets-Version` names the organization's change counter the counts are
    exactly those of. 502 is never produced by this service; it is listed as a gateway in
    front may return it.
    """
    flt = FacetFilter(tuple(state or ()), project_id)
    access = caller_access(org)
    if wait is not None and request.if_none_match:
        answer = _waited(org, access, flt, wait)
    else:
        answer = _read(org, access, flt)
    if request.if_none_match.contains_weak(answer.etag):
        _served("not_modified")
        return _tagged(Response(status=304), answer)
    _served(answer.path)
    # What current_app.json.response makes of the body, without encoding it again.
    response = current_app.response_class(answer.body, mimetype=current_app.json.mimetype)
    return _tagged(response, answer)


def _read(org: str, access: Access, flt: FacetFilter) -> FacetsAnswer:
    return answer_facets(access, flt, refresh=lambda: caller_access(org))


def _waited(org: str, access: Access, flt: FacetFilter, wait_s: int) -> FacetsAnswer:
    """The view once its tag is not the one sent any more, or when ``wait_s`` (plus jitter,
    so that watchers do not wake in step) ran out.

    Every answer is a fresh read of the caller's access and view through the normal read
    path: a notification only says when to read again.
    """
    deadline = time.monotonic() + wait_s + random.uniform(0, wait_s / 16)
    with facets_state().watchers.watching(access.org_id) as wait:
        answer = _read(org, access, flt)
        while request.if_none_match.contains_weak(answer.etag):
            left = deadline - time.monotonic()
            if left <= 0 or not wait(answer.access.version, left):
                break
            answer = _read(org, caller_access(org), flt)
    return answer


def _served(path: str) -> None:
    """Count the path that answered (``facets_served_total``) and name it in the request log."""
    FACETS_SERVED.labels(path=path).inc()
    g.facets_path = path


def _tagged(response: Response, answer: FacetsAnswer) -> Response:
    """A facets response (``200`` or ``304``) with the headers naming the view and version."""
    response.headers["ETag"] = quote_etag(answer.etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers[VERSION_HEADER] = str(answer.access.version)
    return response
