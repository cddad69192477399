"""The one SQL recount of an org's facet cells.

The cold-cache fallback, ``flask facets rebuild`` and ``flask facets verify`` all call
``recount_org``. It reads the org's facet version and the GROUP BY in one snapshot
(REPEATABLE READ on PostgreSQL; a single deferred transaction on SQLite), so the counts are
exactly those of that version. With ``timeout_ms`` the database abandons the recount after
that long (PostgreSQL ``SET LOCAL statement_timeout``; SQLite a progress-handler interrupt)
and ``Timeout`` is raised; admin commands pass no timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import OperationalError

from models.access import Access, load_access
from models.errors import Timeout
from models.events import Cell
from models.org import Org
from models.sandbox import Sandbox
from models.session import Database, is_time_limit, wait_for_locks

SQLITE_PROGRESS_STEPS = 1000


@dataclass(frozen=True)
class Recount:
    version: int
    cells: dict[Cell, int]
    access: Access | None = None  # the caller's access in the same snapshot, when asked for


def recount_org(
    db: Database,
    org_id: uuid.UUID,
    *,
    timeout_ms: int | None = None,
    caller: uuid.UUID | None = None,
) -> Recount | None:
    """Count the org's sandboxes by (state, project) at one snapshot; None if the org is gone.

    With ``caller`` (a user id) the caller's access is resolved in the same snapshot, so the
    counts and what the caller may see of them are of one and the same version.

    :raise Timeout: the recount took longer than ``timeout_ms``.
    :raise Forbidden: ``caller`` is no longer a member of the org.
    """
    with db.snapshot_engine.connect() as conn, conn.begin(), _time_limit(db, conn, timeout_ms):
        org = conn.execute(
            select(Org.slug, Org.facet_version).where(Org.id == org_id)
        ).one_or_none()
        if org is None:
            return None
        rows = conn.execute(
            select(Sandbox.state, Sandbox.project_id, func.count())
            .where(Sandbox.org_id == org_id)
            .group_by(Sandbox.state, Sandbox.project_id)
        )
        cells = {(state, project): n for state, project, n in rows}
        access = load_access(conn, org.slug, caller) if caller is not None else None
        return Recount(org.facet_version, cells, access)


@contextmanager
def _time_limit(db: Database, conn: Connection, timeout_ms: int | None) -> Iterator[None]:
    if timeout_ms is None:  # an admin recount: not even the connections' lock wait limit
        wait_for_locks(db, conn)
        yield
        return
    if db.is_sqlite:
        deadline = time.monotonic() + timeout_ms / 1000
        raw = conn.connection.driver_connection
        raw.set_progress_handler(lambda: time.monotonic() > deadline, SQLITE_PROGRESS_STEPS)
    else:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
    try:
        yield
    except OperationalError as exc:
        if is_time_limit(exc):
            raise Timeout(
                f"Counting this organization's sandboxes took longer than {timeout_ms} ms; "
                "retry shortly."
            ) from None
        raise
    finally:
        if db.is_sqlite:
            raw.set_progress_handler(None, 0)
