"""The soak's SQL oracle: the facets a caller should get, from one REPEATABLE READ snapshot.

It reads ``orgs.facet_version`` and the GROUP BY together, as ``models.recount.recount_org``
does, plus the project labels and the caller's project memberships, and builds the body the
facets contract prescribes, independently of the app's read path.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, create_engine, func, select

from models import Org, Project, ProjectMember, Sandbox

if TYPE_CHECKING:
    from soak.traffic import Caller


class Oracle:
    """The facets an org's caller should get, computed from SQL at one snapshot."""

    def __init__(
        self, database_url: str | None, org_id: uuid.UUID, engine: Engine | None = None
    ) -> None:
        """An oracle of one org, on its own engine, or on ``engine`` (shared by many oracles,
        opened with ``isolation_level="REPEATABLE READ"``; its owner disposes of it)."""
        self._owns_engine = engine is None
        self.engine: Engine = engine or create_engine(
            database_url, isolation_level="REPEATABLE READ", pool_size=4
        )
        self.org_id = org_id

    def facets(self, caller: Caller, states: tuple[str, ...], project_id: str | None):
        """``(version, body)`` of the caller's facets under the filters, at one snapshot."""
        with self.engine.connect() as conn, conn.begin():
            version = conn.execute(
                select(Org.facet_version).where(Org.id == self.org_id)
            ).scalar_one()
            cells = conn.execute(
                select(Sandbox.state, Sandbox.project_id, func.count())
                .where(Sandbox.org_id == self.org_id)
                .group_by(Sandbox.state, Sandbox.project_id)
            ).all()
            labels = {
                str(pid): (key, name)
                for pid, key, name in conn.execute(
                    select(Project.id, Project.key, Project.name).where(
                        Project.org_id == self.org_id
                    )
                )
            }
            visible = None
            if not caller.sees_all:
                visible = {
                    str(pid)
                    for pid in conn.execute(
                        select(ProjectMember.project_id)
                        .join(Project, Project.id == ProjectMember.project_id)
                        .where(
                            ProjectMember.user_id == bindparam("user"),
                            Project.org_id == self.org_id,
                        ),
                        {"user": caller.user_id},
                    ).scalars()
                }
        return version, expected_body(cells, labels, visible, states, project_id)

    def version(self) -> int:
        """The org's facet version now: every commit acknowledged before this call is in it."""
        with self.engine.connect() as conn:
            return conn.execute(select(Org.facet_version).where(Org.id == self.org_id)).scalar_one()

    def sandboxes(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str | None]]:
        """``{id: (state, project id)}`` of those sandboxes that exist."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Sandbox.id, Sandbox.state, Sandbox.project_id).where(Sandbox.id.in_(ids))
            ).all()
        return {sid: (s, str(p) if p else None) for sid, s, p in rows}

    def dispose(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


def expected_body(cells, labels, visible, states, project_id) -> dict[str, list[dict[str, Any]]]:
    """The facets body the contract prescribes (README, facets contract) for these rows."""
    if project_id is not None and visible is not None and project_id not in visible:
        return {"projects": [], "states": []}
    by_state: Counter[str] = Counter()
    by_project: Counter[str] = Counter()
    for state, pid, n in cells:
        pid = str(pid) if pid is not None else None
        if visible is not None and pid is not None and pid not in visible:
            continue
        if (states and state not in states) or (project_id is not None and pid != project_id):
            continue
        by_state[state] += n
        if pid is not None:
            by_project[pid] += n
    projects = sorted(
        (-n, labels[pid][1].casefold(), labels[pid][0], pid, n)
        for pid, n in by_project.items()
        if pid in labels
    )
    return {
        "projects": [
            {
                "count": n,
                "project_id": pid,
                "project_key": labels[pid][0],
                "project_name": labels[pid][1],
            }
            for _, _, _, pid, n in projects
        ],
        "states": [
            {"count": n, "value": state}
            for state, n in sorted(by_state.items(), key=lambda item: (-item[1], item[0]))
        ],
    }
