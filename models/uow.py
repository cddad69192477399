"""The unit of work: one transaction, one commit, then the after-commit hooks.

Invariants:
- Every write to sandboxes, projects and memberships happens inside a ``UnitOfWork``.
- A service function locks the org (``lock_org``) before it reads the rows it will change,
  so an org's writers are serialized and every old value they record is the committed one.
- At commit, each org that recorded events gets its ``facet_version`` bumped by exactly one
  in the same transaction. Version order is therefore commit order, and a ``Commit`` says
  which version each org's events produced.
- Hooks run only after a successful commit, with exactly the recorded events; a rollback
  discards them. A failing hook is logged and counted, never raised: the change is committed.
- A unit of work is never resent: its connection is checked at checkout, before anything of it
  reaches the server (``models.session``: one the server closed is replaced), and one lost
  after that fails the request, since the write may have reached the server.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.errors import NotFound
from models.events import Event
from models.org import Org
from models.session import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrgCommit:
    """The events one org recorded and the facet version their commit produced."""

    org_id: uuid.UUID
    version: int
    events: tuple[Event, ...]


Hook = Callable[[Sequence[OrgCommit]], None]


@dataclass
class HookRegistry:
    """The after-commit hooks of one app, and how many times they have failed."""

    hooks: list[Hook] = field(default_factory=list)
    failures: int = 0
    on_failure: Callable[[Hook, BaseException], None] | None = None

    def register(self, hook: Hook) -> None:
        self.hooks.append(hook)

    def run(self, commits: Sequence[OrgCommit]) -> None:
        for hook in self.hooks:
            try:
                hook(commits)
            except Exception as exc:  # a committed change must not turn into a failure
                self.failures += 1
                log.exception("after-commit hook %s failed", getattr(hook, "__name__", hook))
                if self.on_failure is not None:
                    self.on_failure(hook, exc)


class UnitOfWork:
    """``with UnitOfWork(db, hooks) as uow:`` commits on a clean exit, rolls back otherwise."""

    def __init__(self, db: Database, hooks: HookRegistry) -> None:
        self._db = db
        self._hooks = hooks
        self.session: Session
        self._locked: dict[uuid.UUID, int] = {}
        self._events: list[Event] = []
        self.commits: tuple[OrgCommit, ...] = ()

    def __enter__(self) -> UnitOfWork:
        self.session = self._db.write_session()
        self.session.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
            else:
                self.session.rollback()
        finally:
            self._events.clear()
            self.session.close()
        if exc_type is None and self.commits:
            self._hooks.run(self.commits)

    def lock_org(self, org_id: uuid.UUID) -> int:
        """Take the org's row lock (once per unit of work) and return its facet version."""
        if org_id not in self._locked:
            version = self.session.execute(
                select(Org.facet_version).where(Org.id == org_id).with_for_update()
            ).scalar_one_or_none()
            if version is None:
                raise NotFound("Organization not found.")
            self._locked[org_id] = version
        return self._locked[org_id]

    def record(self, event: Event) -> None:
        """Remember a change; the org must have been locked first."""
        if event.org_id not in self._locked:
            raise RuntimeError("record() before lock_org(): the change would be unordered")
        self._events.append(event)

    def _commit(self) -> None:
        by_org: dict[uuid.UUID, list[Event]] = {}
        for event in self._events:
            by_org.setdefault(event.org_id, []).append(event)
        commits = []
        for org_id, events in by_org.items():
            version = self._locked[org_id] + 1
            self.session.execute(update(Org).where(Org.id == org_id).values(facet_version=version))
            commits.append(OrgCommit(org_id, version, tuple(events)))
        self.session.commit()
        self.commits = tuple(commits)
