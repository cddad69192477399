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
    """Resolve the caller's access for a write, which checks it again under the org lock.

    This first read refuses an unknown org (404) or a caller who is not a member (403)
    without joining the org's queue of writers. The check the write relies on is made under
    the lock, so a concurrent membership change cannot slip between the check and the write
    it allows: a sandbox write makes it in the very statement that takes the lock
    (``models.services.sandbox_sql``); any other write starts with ``under_lock``.

    :raise NotFound: no org has this slug.
    :raise Forbidden: the caller is not a member of the org.
    """
    return load_access(uow.session, org_slug, user_id)


def under_lock(uow: UnitOfWork, access: Access) -> Access:
    """Lock the org (once per unit of work) and the caller's access resolved under that lock.

    An org this unit of work locked with ``lock_org`` vouches for the access its caller
    passes (it was resolved under the lock, or is an admin tool's own).

    :raise NotFound: the org is gone.
    :raise Forbidden: the caller is no longer a member of the org.
    """
    if uow.vouches_for(access.org_id):
        return access
    uow.lock_org(access.org_id)
    return load_access(uow.session, access.org_slug, access.user_id)


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
