"""Who may see what in an org, resolved in one statement (with the API key, for a key caller).

owner / admin see every sandbox of the org; a member sees sandboxes in the projects they are a
member of plus sandboxes with no project. ``Access.project_ids`` is None for "every project".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.orm import Session

from models.errors import DomainError, Forbidden, NotFound
from models.org import ApiKey, Membership, Org, Role, User, is_org_slug
from models.prepared import PreparedRead
from models.project import Project, ProjectMember
from models.session import Database


@dataclass(frozen=True)
class Access:
    """A caller's standing in one org, and the org's facet and labels versions when it was read
    (one snapshot: the project labels at ``version`` are those at ``labels_version``; None when
    unknown)."""

    org_id: uuid.UUID
    org_slug: str
    user_id: uuid.UUID
    role: Role
    version: int
    project_ids: frozenset[uuid.UUID] | None
    # The caller's JWTs issued before this no longer authenticate (read in the same statement).
    sessions_revoked_at: datetime | None = None
    labels_version: int | None = None

    def sees_project(self, project_id: uuid.UUID | None) -> bool:
        """Whether sandboxes in this project (None: no project) are visible to the caller."""
        return project_id is None or self.project_ids is None or project_id in self.project_ids

    @property
    def is_admin(self) -> bool:
        return self.role.sees_everything


def _access_columns_from(source, user_id):
    """``source`` joined to the org (by slug), the caller's membership and own projects.

    Selects org id, facet version, role, the caller's ``sessions_revoked_at`` (the users row of
    the membership, by primary key: none for a non-member) and one project per row of
    the caller's project memberships (None when the caller is not a plain member, has no
    project, or the project is another org's), whatever ``source`` is. The project joins
    hang off the caller's own project memberships, not the org's projects, so an owner of an
    org with thousands of projects costs the database no more than one with ten.
    """
    membership = and_(Membership.org_id == Org.id, Membership.user_id == user_id)
    own_memberships = and_(ProjectMember.user_id == user_id, Membership.role == Role.MEMBER.value)
    in_this_org = and_(Project.id == ProjectMember.project_id, Project.org_id == Org.id)
    return (
        source.outerjoin(Membership, membership)
        .outerjoin(User, User.id == Membership.user_id)
        .outerjoin(ProjectMember, own_memberships)
        .outerjoin(Project, in_this_org)
    )


# Built once: constructing these statements costs more than running them (SQLAlchemy then
# reuses their compiled form), and one of them runs on every API request.
_KEY_COLUMNS = (ApiKey.user_id, ApiKey.secret_sha256, ApiKey.expires_at, ApiKey.revoked_at)
_ACCESS_COLUMNS = (
    Org.id,
    Org.facet_version,
    Org.labels_version,
    Membership.role,
    User.sessions_revoked_at,
    Project.id.label("project_id"),
)
_ORG_SLUG = bindparam("org_slug")
_USER_ID = bindparam("user_id")
_PREFIX = bindparam("prefix")
API_KEY_STATEMENT = select(*_KEY_COLUMNS).where(ApiKey.prefix == _PREFIX)
ACCESS_STATEMENT = (
    select(*_ACCESS_COLUMNS)
    .select_from(_access_columns_from(Org.__table__, _USER_ID))
    .where(Org.slug == _ORG_SLUG)
)
KEY_ACCESS_STATEMENT = (
    select(*_KEY_COLUMNS, *_ACCESS_COLUMNS)
    .select_from(
        _access_columns_from(ApiKey.__table__.outerjoin(Org, Org.slug == _ORG_SLUG), ApiKey.user_id)
    )
    .where(ApiKey.prefix == _PREFIX)
)


def org_not_found(org_slug: str) -> NotFound:
    """The 404 of a slug no org has; one with capitals is told that slugs are lowercase."""
    hint = ""
    if org_slug != org_slug.lower() and is_org_slug(org_slug.lower()):
        hint = f" Org slugs are lowercase: '{org_slug.lower()}'?"
    return NotFound(f"Organization '{org_slug}' not found.{hint}")


def require_possible_slug(org_slug: str) -> None:
    """Answer a slug no org can have as absent without asking the database, which could not
    even take some of them (PostgreSQL text refuses NUL).

    :raise NotFound: ``org_slug`` is not of the shape of org slugs.
    """
    if not is_org_slug(org_slug):
        raise org_not_found(org_slug)


def _access_from_rows(rows, org_slug: str, user_id: uuid.UUID) -> Access:
    """The ``Access`` that the rows of either statement describe.

    :raise NotFound: no org has this slug.
    :raise Forbidden: the caller is not a member of the org.
    """
    if not rows or rows[0].id is None:
        raise org_not_found(org_slug)
    first = rows[0]
    if first.role is None:
        raise Forbidden("You are not a member of this organization.")
    role = Role(first.role)
    project_ids = None
    if not role.sees_everything:
        project_ids = frozenset(row.project_id for row in rows if row.project_id is not None)
    return Access(
        first.id,
        org_slug,
        user_id,
        role,
        first.facet_version,
        project_ids,
        first.sessions_revoked_at,
        first.labels_version,
    )


def load_access(conn: Session | Connection, org_slug: str, user_id: uuid.UUID) -> Access:
    """Resolve the org, its facet version, the caller's role and visible projects.

    One statement, so one snapshot and one round trip whatever the role; on ``conn``, for
    callers that need it inside their transaction (``read_access`` is the request path's).

    :raise NotFound: no org has this slug.
    :raise Forbidden: the caller is not a member of the org.
    """
    require_possible_slug(org_slug)
    rows = conn.execute(ACCESS_STATEMENT, {"user_id": user_id, "org_slug": org_slug}).all()
    return _access_from_rows(rows, org_slug, user_id)


_API_KEY_READ = PreparedRead(API_KEY_STATEMENT)
_ACCESS_READ = PreparedRead(ACCESS_STATEMENT)
_KEY_ACCESS_READ = PreparedRead(KEY_ACCESS_STATEMENT)


def read_access(db: Database, org_slug: str, user_id: uuid.UUID) -> Access:
    """``load_access`` as one autocommit read on the hot path (``models.prepared``)."""
    require_possible_slug(org_slug)
    rows = db.read_rows(_ACCESS_READ, user_id=user_id, org_slug=org_slug)
    return _access_from_rows(rows, org_slug, user_id)


def check_access(db: Database, org_slug: str, user_id: uuid.UUID) -> Access:
    """``load_access`` for a write's first check, before its unit of work begins: in a short
    transaction of its own on the writer's engine (a write's statements have no statement
    time limit, ``read_access``'s do), so that a write waiting for its turn holds no
    connection. The write checks again under the org lock."""
    with db.write_session() as session, session.begin():
        return load_access(session, org_slug, user_id)


@dataclass(frozen=True)
class KeyAccess:
    """An API key's stored fields, and its owner's access to one org or why there is none.

    The key is not checked here: whoever holds this must verify the secret, revocation and
    expiry before using ``access``.
    """

    user_id: uuid.UUID
    secret_sha256: str
    expires_at: datetime | None
    revoked_at: datetime | None
    access: Access | DomainError


def read_api_key(db: Database, prefix: str):
    """The stored fields of the API key with this prefix (a row of ``_KEY_COLUMNS``), or None.

    The key is not checked here: the caller verifies secret, revocation and expiry.
    """
    rows = db.read_rows(_API_KEY_READ, prefix=prefix)
    return rows[0] if rows else None


def read_key_access(db: Database, org_slug: str, prefix: str) -> KeyAccess | None:
    """The API key with this prefix and its owner's access to ``org_slug``, in one statement.

    None when no key has this prefix.
    """
    if not is_org_slug(org_slug):  # no statement for the org: just the key
        key = read_api_key(db, prefix)
        if key is None:
            return None
        access: Access | DomainError = org_not_found(org_slug)
        return KeyAccess(key.user_id, key.secret_sha256, key.expires_at, key.revoked_at, access)
    rows = db.read_rows(_KEY_ACCESS_READ, prefix=prefix, org_slug=org_slug)
    if not rows:
        return None
    key = rows[0]
    try:
        access = _access_from_rows(rows, org_slug, key.user_id)
    except DomainError as error:
        access = error
    return KeyAccess(key.user_id, key.secret_sha256, key.expires_at, key.revoked_at, access)
