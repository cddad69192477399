"""The one SQL recount of an org's facet cells.

The cold-cache fallback and ``flask facets verify --org`` call ``recount_org``; ``flask facets
rebuild`` and ``verify`` of every org call ``recount_orgs``, the same count for a batch of orgs
(one GROUP BY org_id, state, project_id over a range of org ids). Both build the GROUP BY with
``cells_query`` and read the orgs' facet versions and the GROUP BY in one snapshot (REPEATABLE
READ on PostgreSQL; a single deferred transaction on SQLite), so each org's counts are exactly
those of the version read with them. With ``timeout_ms`` the database abandons the recount after
that long (PostgreSQL ``SET LOCAL statement_timeout``; SQLite a progress-handler interrupt)
and ``Timeout`` is raised; admin commands pass no timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Select, String, cast, func, select
from sqlalchemy.exc import OperationalError

from models.access import Access, load_access
from models.errors import Timeout
from models.events import NO_PROJECT, Cell, decode_cells
from models.org import Org
from models.sandbox import Sandbox
from models.session import Database, is_time_limit, wait_for_locks

SQLITE_PROGRESS_STEPS = 1000
BATCH_ORGS = 1000


@dataclass(frozen=True)
class Recount:
    version: int
    cells: dict[Cell, int]
    access: Access | None = None  # the caller's access in the same snapshot, when asked for


@dataclass(frozen=True)
class OrgRecount:
    """One org of a batched recount: its version and its cells as words (``encode_cells``),
    formatted by the database; ``recount`` parses them (an admin pass needs that only for an
    org whose cache differs)."""

    org_id: uuid.UUID
    slug: str
    version: int
    words: str

    @property
    def recount(self) -> Recount:
        return Recount(self.version, decode_cells(self.words))


def cells_query(*criteria, by_org: bool = False) -> Select:
    """The GROUP BY (state, project) of the sandboxes matching ``criteria``, and by org first
    when ``by_org`` (an index-only scan of ``ix_sandboxes_org_state_project``)."""
    columns = (Sandbox.state, Sandbox.project_id)
    if by_org:
        columns = (Sandbox.org_id, *columns)
    return select(*columns, func.count().label("n")).where(*criteria).group_by(*columns)


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
        rows = conn.execute(cells_query(Sandbox.org_id == org_id))
        cells = {(state, project): n for state, project, n in rows}
        access = load_access(conn, org.slug, caller) if caller is not None else None
        return Recount(org.facet_version, cells, access)


def recount_orgs(
    db: Database,
    *,
    after: uuid.UUID | None = None,
    until: uuid.UUID | None = None,
    limit: int | None = BATCH_ORGS,
    slug: str | None = None,
) -> list[OrgRecount]:
    """The orgs of id above ``after`` and up to ``until`` (inclusive), in id order, at most
    ``limit`` of them (only ``slug``, if given), each counted by (state, project), all at one
    snapshot; an admin recount (no time limit).

    Keyset pagination: the last org id of a batch is the next ``after``; an empty list means
    there are no more orgs. Or a range: ``after`` and ``until`` with no ``limit``.

    The database formats each org's cells as words (one row per org rather than one per
    cell): fetching a row per cell cost the client more than the whole count costs the server.
    """
    with db.snapshot_engine.connect() as conn, conn.begin(), _time_limit(db, conn, None):
        query = select(Org.id, Org.slug, Org.facet_version).order_by(Org.id).limit(limit)
        if after is not None:
            query = query.where(Org.id > after)
        if until is not None:
            query = query.where(Org.id <= until)
        if slug is not None:
            query = query.where(Org.slug == slug)
        orgs = conn.execute(query).all()
        if not orgs:
            return []
        # The batch is every org of its id range in this snapshot, so one range scan counts it.
        first, last = orgs[0][0], orgs[-1][0]
        words = dict(conn.execute(_words_query(db, first, last)).all())
        return [
            OrgRecount(org_id, org_slug, version, words.get(org_id, ""))
            for org_id, org_slug, version in orgs
        ]


def _words_query(db: Database, first: uuid.UUID, last: uuid.UUID) -> Select:
    """(org id, its cells as ``encode_cells`` words) of the orgs in [first, last] that have
    sandboxes: ``cells_query`` by org, aggregated into one string per org."""
    cells = cells_query(Sandbox.org_id >= first, Sandbox.org_id <= last, by_org=True).subquery()
    state, project, n = cells.c.state, cells.c.project_id, cells.c.n
    if db.is_sqlite:  # a UUID is 32 hex digits there: give it the canonical dashes
        hex_id = cast(project, String)
        project_text = func.substr(hex_id, 1, 8)
        for start, length in ((9, 4), (13, 4), (17, 4), (21, 12)):
            project_text = project_text.concat("-").concat(func.substr(hex_id, start, length))
        aggregate = func.group_concat
    else:
        project_text, aggregate = cast(project, String), func.string_agg
    word = (
        cast(state, String)
        .concat(" ")
        .concat(func.coalesce(project_text, NO_PROJECT))
        .concat(" ")
        .concat(cast(n, String))
    )
    return select(cells.c.org_id, aggregate(word, " ")).group_by(cells.c.org_id)


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
