"""``GET /api/v1/org/{org}/sandboxes/facets``: the tab badges and filter dropdowns."""

from __future__ import annotations

from facets.auth import login_required
from facets.read import FacetFilter, read_facets
from facets.schemas import SandboxFacetsQueryArgsSchema, SandboxFacetsResponseSchema
from facets.views.blueprint import (
    BEARER_SECURITY,
    ERROR_DESCRIPTIONS,
    ORG_PARAMETER,
    blp,
    caller_access,
    documents_errors,
)


@blp.route("/sandboxes/facets", methods=["GET"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(SandboxFacetsQueryArgsSchema, location="query", as_kwargs=True)
@blp.response(200, SandboxFacetsResponseSchema, description="Successful Response")
@documents_errors(*ERROR_DESCRIPTIONS)
@blp.doc(security=BEARER_SECURITY, operationId="get_sandbox_facets")
def get_sandbox_facets(org: str, state=None, project_id=None):
    """Get sandbox facets

    Per-dimension counts for sandboxes the caller can see in this org. Every caller-supplied
    filter is applied to both facets, so counts reflect the sandboxes currently in view.
    Powers the tab badges and filter dropdowns on the Hosted Sandboxes page.

    A `project_id` the caller cannot see (or that does not exist) gives empty facets.
    502 is never produced by this service; it is listed as a gateway in front may return it.
    """
    access = caller_access(org)
    return read_facets(access, FacetFilter(tuple(state or ()), project_id))
