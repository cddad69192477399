"""Sandboxes: the things the facets count.

``ix_sandboxes_org_state_project`` covers (org_id, state, project_id), so one org's
GROUP BY state, project_id is an index-only scan on PostgreSQL. Its project foreign key has
no ``ON DELETE`` action on purpose: deleting a project moves its sandboxes to "no project"
through the unit of work, which records the change for the counter cache.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow, uuid_pk


class SandboxState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    KILLED = "killed"


SANDBOX_STATES: tuple[str, ...] = tuple(s.value for s in SandboxState)


class Sandbox(Base):
    __tablename__ = "sandboxes"
    __table_args__ = (
        CheckConstraint("state IN ('running', 'paused', 'killed')", name="state"),
        Index("ix_sandboxes_org_state_project", "org_id", "state", "project_id"),
        Index("ix_sandboxes_org_created", "org_id", "created_at", "id"),
        Index("ix_sandboxes_project", "project_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id"))
    state: Mapped[str] = mapped_column(String(16), default=SandboxState.RUNNING.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
