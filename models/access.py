"""Who may see what in an org, resolved in one statement.

owner / admin see every sandbox of the org; a member sees sandboxes in the projects they are a
member of plus sandboxes with no project. ``Access.project_ids`` is None for "every project".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.orm import Session

from models.errors import Forbidden, NotFound
from models.org import Membership, Org, Role
from models.project import Project, ProjectMember


@dataclass(frozen=True)
class Access:
    """A caller's standing in one org, and the org's facet version when it was read."""

    org_id: uuid.UUID
    org_slug: str
    user_id: uuid.UUID
    role: Role
    version: int
    project_ids: frozenset[uuid.UUID] | None

    def sees_project(self, project_id: uuid.UUID | None) -> bool:
        """Whether sandboxes in this project (None: no project) are visible to the caller."""
        return project_id is None or self.project_ids is None or project_id in self.project_ids

    @property
    def is_admin(self) -> bool:
        return self.role.sees_everything


# Built once: constructing this statement costs more than running it (SQLAlchemy then reuses
# its compiled form), and it runs on every API request.
_USER_ID = bindparam("user_id")
_OWN_PROJECTS = (
    select(ProjectMember.project_id, Project.org_id)
    .join(Project, Project.id == ProjectMember.project_id)
    .where(ProjectMember.user_id == _USER_ID)
    .subquery()
)
ACCESS_STATEMENT = (
    select(Org.id, Org.facet_version, Membership.role, _OWN_PROJECTS.c.project_id)
    .outerjoin(Membership, and_(Membership.org_id == Org.id, Membership.user_id == _USER_ID))
    .outerjoin(
        _OWN_PROJECTS,
        and_(_OWN_PROJECTS.c.org_id == Org.id, Membership.role == Role.MEMBER.value),
    )
    .where(Org.slug == bindparam("org_slug"))
)


def load_access(conn: Session | Connection, org_slug: str, user_id: uuid.UUID) -> Access:
    """Resolve the org, its facet version, the caller's role and visible projects.

    One statement, so one snapshot and one round trip whatever the role.

    :raise NotFound: no org has this slug.
    :raise Forbidden: the caller is not a member of the org.
    """
    rows = conn.execute(ACCESS_STATEMENT, {"user_id": user_id, "org_slug": org_slug}).all()
    if not rows:
        raise NotFound(f"Organization '{org_slug}' not found.")
    org_id, version, role, _ = rows[0]
    if role is None:
        raise Forbidden("You are not a member of this organization.")
    role = Role(role)
    project_ids = None
    if not role.sees_everything:
        project_ids = frozenset(row.project_id for row in rows if row.project_id is not None)
    return Access(org_id, org_slug, user_id, role, version, project_ids)
