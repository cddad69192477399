"""``/api/v1/org/{org}/sandboxes``: list, create, change and delete sandboxes."""

from __future__ import annotations

import uuid

from facets.api.blueprint import (
    BEARER_SECURITY,
    ORG_PARAMETER,
    as_caller,
    blp,
    caller_access,
    documents_errors,
)
from facets.api.cursor import decode_cursor, encode_cursor
from facets.api.schemas import (
    SandboxCreateSchema,
    SandboxListQueryArgsSchema,
    SandboxListResponseSchema,
    SandboxSchema,
    SandboxUpdateSchema,
)
from facets.edge.auth import login_required
from facets.extensions import state as app_state
from models import queries
from models.services import sandboxes


@blp.route("/sandboxes", methods=["GET"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(SandboxListQueryArgsSchema(), location="query", as_kwargs=True)
@blp.response(200, SandboxListResponseSchema, description="Successful Response")
@documents_errors(400, 401, 403, 404, 422, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="list_sandboxes")
def list_sandboxes(org: str, limit: int, state=None, project_id=None, cursor=None):
    """List sandboxes

    The sandboxes the caller can see, newest first, with the same filters and visibility as the
    facets. Follow `next_cursor` until it is null to see every sandbox exactly once, even while
    others are being created.
    """
    after = decode_cursor(cursor) if cursor else None
    access = caller_access(org)
    with app_state().db.read_session() as session:
        page, more = queries.list_sandboxes(
            session,
            access=access,
            states=tuple(state or ()),
            project_id=project_id,
            limit=limit,
            after=after,
        )
    next_cursor = encode_cursor((page[-1].created_at, page[-1].id)) if more else None
    return {"sandboxes": page, "next_cursor": next_cursor}


@blp.route("/sandboxes", methods=["POST"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(SandboxCreateSchema(), required=False)
@blp.response(201, SandboxSchema, description="The created sandbox")
@documents_errors(400, 401, 403, 404, 422, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="create_sandbox")
def create_sandbox(body: dict, org: str):
    """Create a sandbox

    Running unless `state` says paused. A member may create sandboxes only in a project they
    belong to, or in no project.
    """
    return as_caller(org, sandboxes.create_sandbox, **body)


@blp.route("/sandboxes/<uuid:sandbox_id>", methods=["PATCH"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(SandboxUpdateSchema(), required=False)
@blp.response(200, SandboxSchema, description="The sandbox after the change")
@documents_errors(400, 401, 403, 404, 409, 422, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="update_sandbox")
def update_sandbox(body: dict, org: str, sandbox_id: uuid.UUID):
    """Change a sandbox

    Change its state and/or move it to another project (null: no project), under the same rule
    as creating in it. Killed is terminal: any change to a killed sandbox is a conflict; a body
    that changes nothing succeeds and changes nothing.
    """
    return as_caller(org, sandboxes.update_sandbox, sandbox_id=sandbox_id, **body)


@blp.route("/sandboxes/<uuid:sandbox_id>", methods=["DELETE"], parameters=[ORG_PARAMETER])
@login_required
@blp.response(204, description="Deleted")
@documents_errors(400, 401, 403, 404, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="delete_sandbox")
def delete_sandbox(org: str, sandbox_id: uuid.UUID):
    """Delete a sandbox

    The sandbox is gone for good; deleting one that does not exist (any more) is 404.
    """
    as_caller(org, sandboxes.delete_sandbox, sandbox_id=sandbox_id)
