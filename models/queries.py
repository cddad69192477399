"""Read-only queries behind the list endpoints: what a caller can see, filtered and paginated.

Sandboxes are listed newest first by the keyset ``(created_at, id)``. ``id`` breaks
``created_at`` ties (sandboxes created in one unit of work may share a timestamp), so the order
is total and a page that starts strictly after the previous page's last key never repeats or
skips a row, whatever is inserted in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.orm import Session

from models.access import Access
from models.project import Project
from models.sandbox import Sandbox

SandboxKey = tuple[datetime, uuid.UUID]


def list_sandboxes(
    session: Session,
    *,
    access: Access,
    states: Sequence[str] = (),
    project_id: uuid.UUID | None = None,
    limit: int,
    after: SandboxKey | None = None,
) -> tuple[list[Sandbox], bool]:
    """One page of the sandboxes the caller can see, and whether more follow it."""
    query = select(Sandbox).where(Sandbox.org_id == access.org_id)
    if access.project_ids is not None:
        query = query.where(
            or_(Sandbox.project_id.is_(None), Sandbox.project_id.in_(access.project_ids))
        )
    if states:
        query = query.where(Sandbox.state.in_(states))
    if project_id is not None:
        query = query.where(Sandbox.project_id == project_id)
    if after is not None:
        query = query.where(tuple_(Sandbox.created_at, Sandbox.id) < tuple_(*after))
    rows = list(
        session.scalars(
            query.order_by(Sandbox.created_at.desc(), Sandbox.id.desc()).limit(limit + 1)
        )
    )
    return rows[:limit], len(rows) > limit


def list_projects(session: Session, *, access: Access) -> list[Project]:
    """The projects the caller can see, by name then key."""
    query = select(Project).where(Project.org_id == access.org_id)
    if access.project_ids is not None:
        query = query.where(Project.id.in_(access.project_ids))
    return list(session.scalars(query.order_by(func.lower(Project.name), Project.key)))
