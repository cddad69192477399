"""``/api/v1/org/{org}/projects``: projects and their members."""

from __future__ import annotations

import uuid

from flask import current_app

from facets.api.blueprint import (
    BEARER_SECURITY,
    ORG_PARAMETER,
    as_caller,
    blp,
    caller_access,
    documents_errors,
)
from facets.api.schemas import (
    ProjectCreateSchema,
    ProjectListResponseSchema,
    ProjectMemberAddSchema,
    ProjectSchema,
    ProjectUpdateSchema,
)
from facets.edge.auth import login_required
from facets.extensions import state
from models import queries
from models.services import projects


@blp.route("/projects", methods=["GET"], parameters=[ORG_PARAMETER])
@login_required
@blp.response(200, ProjectListResponseSchema, description="Successful Response")
@documents_errors(400, 401, 403, 404, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="list_projects")
def list_projects(org: str):
    """List projects

    Owners and admins see every project of the org; a member sees the projects they belong to.
    """
    access = caller_access(org)
    with state().db.read_session() as session:
        return {"projects": queries.list_projects(session, access=access)}


@blp.route("/projects", methods=["POST"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(ProjectCreateSchema())
@blp.response(201, ProjectSchema, description="The created project")
@documents_errors(400, 401, 403, 404, 409, 422, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="create_project")
def create_project(body: dict, org: str):
    """Create a project

    Owners and admins only. The key is unique in the org (409 `already_exists_error`), and an
    org has at most `MAX_PROJECTS_PER_ORG` projects (409 `conflict_error` saying the limit).
    """
    cap = current_app.config["MAX_PROJECTS_PER_ORG"]
    return as_caller(org, projects.create_project, max_projects=cap, **body)


@blp.route("/projects/<uuid:project_id>", methods=["PATCH"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(ProjectUpdateSchema(), required=False)
@blp.response(200, ProjectSchema, description="The project after the change")
@documents_errors(400, 401, 403, 404, 409, 422, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="update_project")
def update_project(body: dict, org: str, project_id: uuid.UUID):
    """Rename a project

    Change its key and/or name. Owners and admins only.
    """
    return as_caller(org, projects.update_project, project_id=project_id, **body)


@blp.route("/projects/<uuid:project_id>", methods=["DELETE"], parameters=[ORG_PARAMETER])
@login_required
@blp.response(204, description="Deleted")
@documents_errors(400, 401, 403, 404, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="delete_project")
def delete_project(org: str, project_id: uuid.UUID):
    """Delete a project

    Owners and admins only. Its sandboxes go on existing with no project.
    """
    as_caller(org, projects.delete_project, project_id=project_id)


@blp.route("/projects/<uuid:project_id>/members", methods=["POST"], parameters=[ORG_PARAMETER])
@login_required
@blp.arguments(ProjectMemberAddSchema())
@blp.response(204, description="The user is a member of the project")
@documents_errors(400, 401, 403, 404, 422, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="add_project_member")
def add_project_member(body: dict, org: str, project_id: uuid.UUID):
    """Add a project member

    Owners and admins only. The email must belong to a member of the org; adding someone who
    already is a project member changes nothing.
    """
    as_caller(org, projects.add_project_member, project_id=project_id, **body)


@blp.route(
    "/projects/<uuid:project_id>/members/<uuid:user_id>",
    methods=["DELETE"],
    parameters=[ORG_PARAMETER],
)
@login_required
@blp.response(204, description="The user is no longer a member of the project")
@documents_errors(400, 401, 403, 404, 426, 429, 500)
@blp.doc(security=BEARER_SECURITY, operationId="remove_project_member")
def remove_project_member(org: str, project_id: uuid.UUID, user_id: uuid.UUID):
    """Remove a project member

    Owners and admins only; removing a user who is not a member is 404.
    """
    as_caller(org, projects.remove_project_member, project_id=project_id, user_id=user_id)
