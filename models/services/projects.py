"""Creating, renaming and deleting projects, and managing their members.

Deleting a project moves its sandboxes to "no project" here, inside the unit of work, so the
move is recorded (per state) for the counter cache rather than done silently by the database.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import delete, func, select, update

from models.access import Access
from models.base import utcnow
from models.errors import AlreadyExists, Conflict, Invalid, NotFound
from models.events import ProjectCreated, ProjectDeleted, ProjectMembershipChanged, ProjectRenamed
from models.org import Membership, User
from models.project import PROJECT_KEY_PATTERN, Project, ProjectMember
from models.sandbox import Sandbox
from models.services.common import UNSET, Unset, require_admin, under_lock, visible_project
from models.uow import UnitOfWork


def _check_key(uow: UnitOfWork, access: Access, key: str) -> None:
    if not re.fullmatch(PROJECT_KEY_PATTERN, key):
        raise Invalid(
            f"Invalid project key '{key}': 1-32 letters, digits, '_' or '-', "
            "starting with a letter or digit."
        )
    taken = uow.session.scalar(
        select(Project.id).where(Project.org_id == access.org_id, Project.key == key)
    )
    if taken is not None:
        raise AlreadyExists(f"A project with key '{key}' already exists in this org.")


def create_project(
    uow: UnitOfWork, *, access: Access, key: str, name: str, max_projects: int | None = None
) -> Project:
    """Create a project with a key unique in the org (owners and admins only), while the org
    has fewer than ``max_projects`` (None: no cap), counted under the org lock so concurrent
    creates cannot pass it together.

    :raise Conflict: the org already has ``max_projects`` projects.
    """
    access = under_lock(uow, access)
    require_admin(access, "create projects")
    if max_projects is not None:
        held = uow.session.scalar(
            select(func.count()).select_from(Project).where(Project.org_id == access.org_id)
        )
        if held >= max_projects:
            raise Conflict(
                f"This organization has {held} projects and may have at most {max_projects}: "
                "delete a project before creating another."
            )
    _check_key(uow, access, key)
    project = Project(org_id=access.org_id, key=key, name=name)
    uow.session.add(project)
    uow.session.flush()
    uow.record(ProjectCreated(access.org_id, project.id, key, name))
    return project


def update_project(
    uow: UnitOfWork,
    *,
    access: Access,
    project_id: uuid.UUID,
    key: str | Unset = UNSET,
    name: str | Unset = UNSET,
) -> Project:
    """Change a project's key and/or name (owners and admins only)."""
    access = under_lock(uow, access)
    project = visible_project(uow, access, project_id)
    require_admin(access, "change projects")
    new_key = project.key if key is UNSET else key
    new_name = project.name if name is UNSET else name
    if (new_key, new_name) == (project.key, project.name):
        return project
    if new_key != project.key:
        _check_key(uow, access, new_key)
    event = ProjectRenamed(access.org_id, project.id, project.key, project.name, new_key, new_name)
    project.key, project.name = new_key, new_name
    uow.session.flush()
    uow.record(event)
    return project


def delete_project(uow: UnitOfWork, *, access: Access, project_id: uuid.UUID) -> None:
    """Delete a project; its sandboxes go on existing without a project."""
    access = under_lock(uow, access)
    project = visible_project(uow, access, project_id)
    require_admin(access, "delete projects")
    moved = dict(
        uow.session.execute(
            select(Sandbox.state, func.count())
            .where(Sandbox.project_id == project.id)
            .group_by(Sandbox.state)
        ).all()
    )
    uow.session.execute(
        update(Sandbox)
        .where(Sandbox.project_id == project.id)
        .values(project_id=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    uow.session.execute(delete(ProjectMember).where(ProjectMember.project_id == project.id))
    uow.session.delete(project)
    uow.session.flush()
    uow.record(ProjectDeleted(access.org_id, project.id, moved))


def add_project_member(
    uow: UnitOfWork, *, access: Access, project_id: uuid.UUID, email: str
) -> None:
    """Let an org member see a project's sandboxes (owners and admins only)."""
    access = under_lock(uow, access)
    project = visible_project(uow, access, project_id)
    require_admin(access, "manage project members")
    user_id = uow.session.scalar(
        select(User.id)
        .join(Membership, Membership.user_id == User.id)
        .where(func.lower(User.email) == email.strip().lower(), Membership.org_id == access.org_id)
    )
    if user_id is None:
        raise NotFound(f"No member of this org has the email '{email}'.")
    if uow.session.get(ProjectMember, (project.id, user_id)) is not None:
        return
    uow.session.add(ProjectMember(project_id=project.id, user_id=user_id))
    uow.session.flush()
    uow.record(ProjectMembershipChanged(access.org_id, project.id, user_id, added=True))


def remove_project_member(
    uow: UnitOfWork, *, access: Access, project_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Stop a user seeing a project's sandboxes (owners and admins only)."""
    access = under_lock(uow, access)
    project = visible_project(uow, access, project_id)
    require_admin(access, "manage project members")
    removed = uow.session.execute(
        delete(ProjectMember)
        .where(ProjectMember.project_id == project.id, ProjectMember.user_id == user_id)
        .returning(ProjectMember.user_id)
    ).one_or_none()
    if removed is None:
        raise NotFound("That user is not a member of this project.")
    uow.record(ProjectMembershipChanged(access.org_id, project.id, user_id, added=False))
