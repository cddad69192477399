"""What the sandbox and project services share: the locked access check and lookups."""

from __future__ import annotations

import enum
import uuid

from models.access import Access, load_access
from models.errors import Forbidden, NotFound
from models.project import Project
from models.uow import UnitOfWork


class Unset(enum.Enum):
    """Marks a keyword argument the caller did not pass (distinct from an explicit None)."""

    UNSET = "unset"


UNSET = Unset.UNSET


def lock_access(uow: UnitOfWork, *, org_slug: str, user_id: uuid.UUID) -> Access:
    """Resolve the caller's access, lock the org, and resolve it again under that lock.

    The first read refuses an unknown org (404) or a caller who is not a member (403)
    without joining the org's queue of writers; the second, under the lock, is the one the
    write relies on, so a concurrent membership change cannot slip between the check and the
    write it allows. (A write session reads committed data afresh with each statement.)

    :raise NotFound: no org has this slug.
    :raise Forbidden: the caller is not a member of the org.
    """
    access = load_access(uow.session, org_slug, user_id)
    uow.lock_org(access.org_id)
    return load_access(uow.session, org_slug, user_id)


def require_admin(access: Access, action: str) -> None:
    """Only owners and admins may ``action``."""
    if not access.is_admin:
        raise Forbidden(f"Only owners and admins may {action}.")


def visible_project(uow: UnitOfWork, access: Access, project_id: uuid.UUID) -> Project:
    """A project of the org the caller can see; anything else is indistinguishable from absent."""
    project = uow.session.get(Project, project_id)
    if project is None or project.org_id != access.org_id or not access.sees_project(project.id):
        raise NotFound("Project not found.")
    return project


def placeable_project(uow: UnitOfWork, access: Access, project_id: uuid.UUID | None) -> None:
    """Check the caller may put a sandbox in this project (None: no project, always allowed).

    A project the caller is not a member of is answered as absent, like an unknown id: a
    different answer would tell a member which project ids exist.
    """
    if project_id is not None:
        visible_project(uow, access, project_id)
