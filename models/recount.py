"""The one SQL recount of an org's facet cells.

The cold-cache fallback, ``flask facets rebuild`` and ``flask facets verify`` all call
``recount_org``. It reads the org's facet version and the GROUP BY in one snapshot
(REPEATABLE READ on PostgreSQL; a single deferred transaction on SQLite), so the counts are
exactly those of that version.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

from models.events import Cell
from models.org import Org
from models.sandbox import Sandbox
from models.session import Database


@dataclass(frozen=True)
class Recount:
    version: int
    cells: dict[Cell, int]


def recount_org(db: Database, org_id: uuid.UUID) -> Recount | None:
    """Count the org's sandboxes by (state, project) at one snapshot; None if the org is gone."""
    with db.snapshot_engine.connect() as conn, conn.begin():
        version = conn.execute(
            select(Org.facet_version).where(Org.id == org_id)
        ).scalar_one_or_none()
        if version is None:
            return None
        rows = conn.execute(
            select(Sandbox.state, Sandbox.project_id, func.count())
            .where(Sandbox.org_id == org_id)
            .group_by(Sandbox.state, Sandbox.project_id)
        )
        return Recount(version, {(state, project): n for state, project, n in rows})
