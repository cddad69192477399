"""``GET /api/v1/org/{org}/sandboxes/facets``: the tab badges and filter dropdowns."""

from __future__ import annotations

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
from facets.counts.etag import CACHE_CONTROL, VERSION_HEADER, facets_etag
from facets.counts.read import FacetFilter, answer_facets
from facets.edge.auth import login_required
from facets.ops.metrics import FACETS_SERVED


@blp.route("/sandboxes/facets", methods=["GET"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(SandboxFacetsQueryArgsSchema(), location="query", as_kwargs=True)
@blp.response(200, SandboxFacetsResponseSchema, description="Successful Response")
@blp.alt_response(304, description="Not modified: the `If-None-Match` tag is still current.")
@documents_errors(*ERROR_DESCRIPTIONS)
@blp.doc(security=BEARER_SECURITY, operationId="get_sandbox_facets")
def get_sandbox_facets(org: str, state=None, project_id=None):
    """Get sandbox facets

    Per-dimension counts for sandboxes the caller can see in this org. Every caller-supplied
    filter is applied to both facets, so counts reflect the sandboxes currently in view.
    Powers the tab badges and filter dropdowns on the Hosted Sandboxes page.

    A `project_id` the caller cannot see (or that does not exist) gives empty facets.
    Responses carry an `ETag`; send it back in `If-None-Match` to get a 304 while nothing
    in the caller's view changed. `X-Facets-Version` names the organization's change counter
    the counts are exactly those of. 502 is never produced by this service; it is listed as a
    gateway in front may return it.
    """
    access = caller_access(org)
    flt = FacetFilter(tuple(state or ()), project_id)
    etag = facets_etag(access, flt)
    if request.if_none_match.contains_weak(etag):
        _served("not_modified")
        return _tagged(Response(status=304), etag, access.version)
    answer = answer_facets(access, flt, etag, refresh=lambda: caller_access(org))
    _served(answer.path)
    # What current_app.json.response makes of the body, without encoding it again.
    response = current_app.response_class(answer.body, mimetype=current_app.json.mimetype)
    return _tagged(response, answer.etag, answer.access.version)


def _served(path: str) -> None:
    """Count the path that answered (``facets_served_total``) and name it in the request log."""
    FACETS_SERVED.labels(path=path).inc()
    g.facets_path = path


def _tagged(response: Response, etag: str, version: int) -> Response:
    """A facets response (``200`` or ``304``) with the headers naming the version it is of."""
    response.headers["ETag"] = quote_etag(etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers[VERSION_HEADER] = str(version)
    return response
