"""The statements of the sandbox writes: lock, check, change and read the old values at once.

Each write is a ``LockedWrite`` (``models.locked_write``): a one-row ``facts`` CTE and a
``change`` that happens only when ``facts.outcome`` is ``'ok'``. On PostgreSQL both, and the
org's version bump, are ONE statement, so the org row lock is held for that statement and the
commit, not for a conversation with Python.

Why the facts are exact although the statement's snapshot predates the lock it waits for:
- every row the write depends on is read with a row lock (``FOR UPDATE`` / ``FOR SHARE``),
  and a locking read in READ COMMITTED returns the row's newest committed version (or no row
  when it was deleted meanwhile), whatever the snapshot;
- each of those reads joins ``locked`` (the org row, ``FOR UPDATE``), so no row is locked
  before the org is: writers of one org queue on the org row only, and never deadlock;
- a row inserted after the snapshot is not seen: the write is then refused as it would have
  been just before that insert committed, and a refusal changes nothing.

Checks are decided once, in SQL (``outcome``), for both dialects; SQLite (no data-modifying
CTEs, writers serialized by ``BEGIN IMMEDIATE``) runs ``facts`` and then ``change``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)

from models.locked_write import ORG_ID, LockedWrite
from models.org import Membership, Org
from models.project import Project, ProjectMember
from models.sandbox import Sandbox

_SANDBOXES = Sandbox.__table__  # Core DML: no ORM bulk semantics
_UUID = _SANDBOXES.c.id.type
_STAMP = Sandbox.__table__.c.updated_at.type
USER_ID = cast(bindparam("w_user_id", type_=_UUID), _UUID)
# (bind names carry a "w_" prefix: a column's own name is reserved in its INSERT/UPDATE)
SANDBOX_ID = cast(bindparam("w_sandbox_id", type_=_UUID), _UUID)
PROJECT_ID = cast(bindparam("w_project_id", type_=_UUID), _UUID)  # the target; NULL: no project
# the caller's role when this unit of work vouches for it (it locked the org itself); NULL else
VOUCHED_ROLE = bindparam("w_vouched_role", type_=String())
SET_STATE = bindparam("w_set_state", type_=Boolean())
STATE = bindparam("w_state", type_=String())
SET_PROJECT = bindparam("w_set_project", type_=Boolean())
NOW = bindparam("w_now", type_=_STAMP)

MEMBER = "member"
KILLED = "killed"


def _locked():
    """The org row, locked: every other locking read of a write joins it."""
    return select(Org.id, Org.facet_version).where(Org.id == ORG_ID).with_for_update().cte("locked")


def _role(locked):
    """The caller's role in the org, newest committed (NULL: not a member)."""
    member = (
        select(Membership.role)
        .join(locked, Membership.org_id == locked.c.id)
        .where(Membership.user_id == USER_ID)
        .with_for_update(of=Membership.__table__, read=True)
        .cte("member")
    )
    return func.coalesce(select(member.c.role).scalar_subquery(), VOUCHED_ROLE)


def _target(locked):
    """The target project if it is the org's."""
    return (
        select(Project.id)
        .join(locked, Project.org_id == locked.c.id)
        .where(Project.id == PROJECT_ID)
        .with_for_update(of=Project.__table__, read=True)
        .cte("target")
    )


def _mine(*project_ids):
    """The caller's memberships among these projects (subqueries that join ``locked``)."""
    return (
        select(ProjectMember.project_id)
        .where(
            ProjectMember.user_id == USER_ID,
            or_(*(ProjectMember.project_id.in_(ids) for ids in project_ids)),
        )
        .with_for_update(read=True)
        .cte("mine")
    )


def _row(locked):
    """The sandbox, if it is the org's, locked for the change."""
    return (
        select(
            Sandbox.id, Sandbox.state, Sandbox.project_id, Sandbox.created_at, Sandbox.updated_at
        )
        .join(locked, Sandbox.org_id == locked.c.id)
        .where(Sandbox.id == SANDBOX_ID)
        .with_for_update(of=Sandbox.__table__)
        .cte("sandbox")
    )


def _hidden(s):
    """The sandbox is absent, or in a project the caller (a plain member) is not one of."""
    return or_(
        s.old_state.is_(None), and_(s.role == MEMBER, s.old_project.is_not(None), not_(s.sees_old))
    )


def _is_member(mine, project_id):
    return exists(select(mine.c.project_id).where(mine.c.project_id == project_id))


def _facts(seen, *outcomes):
    """``seen``'s columns and the first outcome whose condition holds (else ``'ok'``)."""
    s = seen.c
    first = (
        (s.locked_version.is_(None), "org_not_found"),
        (s.role.is_(None), "not_a_member"),
    )
    outcome = case(*first, *((cond(s), name) for cond, name in outcomes), else_="ok")
    return select(*seen.c, outcome.label("outcome")).cte("facts")


def _ok(facts):
    return exists(select(facts.c.outcome).where(facts.c.outcome == "ok"))


def _placeable(s, project):
    """Whether a sandbox may go into ``project`` (NULL: no project): a member needs to be one
    of the project's."""
    return or_(project.is_(None), s.role != MEMBER, s.sees_target)


def create_write() -> LockedWrite:
    locked = _locked()
    target = _target(locked)
    mine = _mine(select(target.c.id))
    seen = select(
        select(locked.c.facet_version).scalar_subquery().label("locked_version"),
        _role(locked).label("role"),
        exists(select(target.c.id)).label("target_found"),
        _is_member(mine, PROJECT_ID).label("sees_target"),
    ).cte("seen")
    facts = _facts(
        seen,
        (lambda s: and_(PROJECT_ID.is_not(None), not_(s.target_found)), "project_not_found"),
        (lambda s: not_(_placeable(s, PROJECT_ID)), "not_placeable"),
    )
    columns = ("id", "org_id", "project_id", "state", "created_at", "updated_at")
    values = select(SANDBOX_ID, ORG_ID, PROJECT_ID, STATE, NOW, NOW).where(_ok(facts))
    change = insert(_SANDBOXES).from_select(columns, values).returning(_SANDBOXES.c.id)
    return LockedWrite(facts, change)


def update_write() -> LockedWrite:
    locked = _locked()
    row = _row(locked)
    target = _target(locked)
    mine = _mine(select(row.c.project_id), select(target.c.id))
    old_state = select(row.c.state).scalar_subquery()
    old_project = select(row.c.project_id).scalar_subquery()
    seen = select(
        select(locked.c.facet_version).scalar_subquery().label("locked_version"),
        _role(locked).label("role"),
        old_state.label("old_state"),
        old_project.label("old_project"),
        select(row.c.created_at).scalar_subquery().label("created_at"),
        select(row.c.updated_at).scalar_subquery().label("updated_at"),
        case((SET_STATE, STATE), else_=old_state).label("new_state"),
        case((SET_PROJECT, PROJECT_ID), else_=old_project).label("new_project"),
        exists(select(target.c.id)).label("target_found"),
        _is_member(mine, old_project).label("sees_old"),
        _is_member(mine, PROJECT_ID).label("sees_target"),
    ).cte("seen")

    def moved(s):
        return s.new_project.is_distinct_from(s.old_project)

    facts = _facts(
        seen,
        (_hidden, "sandbox_not_found"),
        (lambda s: and_(s.new_state == s.old_state, not_(moved(s))), "unchanged"),
        (lambda s: s.old_state == KILLED, "killed"),
        (
            lambda s: and_(moved(s), s.new_project.is_not(None), not_(s.target_found)),
            "project_not_found",
        ),
        (lambda s: and_(moved(s), not_(_placeable(s, s.new_project))), "not_placeable"),
    )
    change = (
        update(_SANDBOXES)
        .where(_SANDBOXES.c.id == SANDBOX_ID, _ok(facts))
        .values(
            state=select(facts.c.new_state).scalar_subquery(),
            project_id=select(facts.c.new_project).scalar_subquery(),
            updated_at=NOW,
        )
        .returning(_SANDBOXES.c.id)
    )
    return LockedWrite(facts, change)


def delete_write() -> LockedWrite:
    locked = _locked()
    row = _row(locked)
    mine = _mine(select(row.c.project_id))
    old_project = select(row.c.project_id).scalar_subquery()
    seen = select(
        select(locked.c.facet_version).scalar_subquery().label("locked_version"),
        _role(locked).label("role"),
        select(row.c.state).scalar_subquery().label("old_state"),
        old_project.label("old_project"),
        _is_member(mine, old_project).label("sees_old"),
    ).cte("seen")
    facts = _facts(
        seen,
        (_hidden, "sandbox_not_found"),
    )
    change = (
        delete(_SANDBOXES)
        .where(_SANDBOXES.c.id == SANDBOX_ID, _ok(facts))
        .returning(_SANDBOXES.c.id)
    )
    return LockedWrite(facts, change)


# Built once: building them costs more than running them.
CREATE = create_write()
UPDATE = update_write()
DELETE = delete_write()
