"""The unit of work: one transaction, one commit, then the after-commit hooks.

Invariants:
- Every write to sandboxes, projects and memberships happens inside a ``UnitOfWork``.
- A service function locks the org before it reads the rows it will change, so an org's
  writers are serialized and every old value they record is the committed one: either
  ``lock_org`` first, or ``run`` of a ``LockedWrite``, which locks, checks, changes and bumps
  in one statement (``models.locked_write``).
- Each org that recorded events gets its ``facet_version`` bumped by exactly one in the same
  transaction, under its row lock (by the first ``LockedWrite`` that changed it, else at
  commit). Version order is therefore commit order, and a ``Commit`` says which version each
  org's events produced. A commit whose events change project labels bumps its
  ``labels_version`` too, in the same statement when it can.
- Hooks run only after a successful commit, with exactly the recorded events; a rollback
  discards them. A failing hook is logged and counted, never raised: the change is committed.
- A unit of work is never resent: its connection is checked at checkout, before anything of it
  reaches the server (``models.session``: one the server closed is replaced), and one lost
  after that fails the request, since the write may have reached the server.
- A unit of work opened for one ``@one_statement`` service (``one_statement=True``) is that
  service's single ``LockedWrite``; on PostgreSQL it runs in autocommit, so the server commits
  as the statement ends and the org lock is held exactly as long as PostgreSQL needs, not until
  the client's ``COMMIT`` arrives (under load, the worker's next turn). Anything further in
  such a unit of work is refused (``RuntimeError``): it would not be atomic with the write.
  There it has no ORM session at all, only a Core connection from the autocommit writer pool
  (``Database.one_statement_engine``): the session's begin, commit and close cost a sandbox
  write more CPU than its statement does.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.orm import Session

from models.errors import NotFound
from models.events import Event
from models.locked_write import LockedWrite
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
Service = TypeVar("Service", bound=Callable)


def one_statement(service: Service) -> Service:
    """Mark a service whose whole unit of work is one ``UnitOfWork.run``: opened for it alone
    (``UnitOfWork(..., one_statement=True)``), it commits as that statement ends."""
    service.one_statement = True  # type: ignore[attr-defined]
    return service


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

    def __init__(self, db: Database, hooks: HookRegistry, *, one_statement: bool = False) -> None:
        self._db = db
        self._hooks = hooks
        self._one_statement = one_statement
        self._statements = 0  # run by lock_org, run and the commit's bump
        # its transaction: an ORM session, or for a one-statement unit on PostgreSQL a connection
        self._tx: Session | Connection
        self._locked: dict[uuid.UUID, int] = {}  # org -> its version when locked
        self._vouched: set[uuid.UUID] = set()  # orgs locked by lock_org
        self._bumped: dict[uuid.UUID, int] = {}  # org -> the version a LockedWrite bumped it to
        self._events: list[Event] = []
        self.commits: tuple[OrgCommit, ...] = ()

    def __enter__(self) -> UnitOfWork:
        if self._one_statement and self._is_postgres():  # its statement commits as it ends
            self._tx = self._db.one_statement_engine.connect()
        else:
            self._tx = self._db.write_session()
            self._tx.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
            else:
                self._tx.rollback()
        finally:
            self._events.clear()
            self._tx.close()
        if exc_type is None and self.commits:
            self._hooks.run(self.commits)

    @property
    def session(self) -> Session:
        """The ORM session of this unit of work (none for a one-statement one on PostgreSQL)."""
        if not isinstance(self._tx, Session):
            raise RuntimeError("a one-statement unit of work runs its LockedWrite alone")
        return self._tx

    def lock_org(self, org_id: uuid.UUID) -> int:
        """Take the org's row lock (once per unit of work) and return its facet version."""
        if org_id not in self._locked:
            self._count_statement()
            version = self.session.execute(
                select(Org.facet_version).where(Org.id == org_id).with_for_update()
            ).scalar_one_or_none()
            if version is None:
                raise NotFound("Organization not found.")
            self._locked[org_id] = version
        self._vouched.add(org_id)
        return self._locked[org_id]

    def vouches_for(self, org_id: uuid.UUID) -> bool:
        """Whether this unit of work took the org's lock with ``lock_org``: its caller then
        vouches for the access it passes (resolved under that lock, or an admin's own)."""
        return org_id in self._vouched

    def run(self, org_id: uuid.UUID, write: LockedWrite, params: dict) -> Row:
        """Execute a ``LockedWrite`` for ``org_id``; its ``facts`` row (outcome, old values).

        ``params`` are its binds, by their ``w_`` names; this adds the org's.

        The org counts as locked from here on when it exists (``facts.locked_version``).
        """
        params = {**params, "w_org_id": org_id}
        self._count_statement()
        if self._is_postgres():
            facts = self._tx.execute(
                write.single, {**params, "w_bump": org_id not in self._bumped}
            ).one()
            if facts.bumped_version is not None:
                self._bumped[org_id] = facts.bumped_version
            changed = facts.changed
        else:
            facts = self.session.execute(select(write.facts), params).one()
            changed = 0
            if facts.outcome == "ok":
                changed = len(self.session.execute(write.change, params).all())
        if changed != (facts.outcome == "ok"):  # the guard and the outcome disagree: a bug
            raise RuntimeError(f"a LockedWrite with outcome {facts.outcome} changed {changed} rows")
        if facts.locked_version is not None:
            self._locked.setdefault(org_id, facts.locked_version)
        return facts

    def _count_statement(self) -> None:
        # On PostgreSQL a one-statement unit of work is in autocommit: its first statement
        # committed itself, so nothing may follow it.
        if self._one_statement and self._statements and self._is_postgres():
            raise RuntimeError("a one-statement unit of work was asked for a second statement")
        self._statements += 1

    def _is_postgres(self) -> bool:
        return not self._db.is_sqlite

    def record(self, event: Event) -> None:
        """Remember a change; the org must have been locked first."""
        if event.org_id not in self._locked:
            raise RuntimeError("record() before the org is locked: the change would be unordered")
        self._events.append(event)

    def _commit(self) -> None:
        by_org: dict[uuid.UUID, list[Event]] = {}
        for event in self._events:
            by_org.setdefault(event.org_id, []).append(event)
        commits = []
        for org_id, events in by_org.items():
            version = self._bumped.get(org_id)
            bumps: dict = {}
            if version is None:
                version = bumps["facet_version"] = self._locked[org_id] + 1
            if any(event.changes_labels for event in events):
                bumps["labels_version"] = Org.labels_version + 1
            if bumps:
                self._count_statement()
                self.session.execute(update(Org).where(Org.id == org_id).values(**bumps))
            commits.append(OrgCommit(org_id, version, tuple(events)))
        self._tx.commit()
        self.commits = tuple(commits)
