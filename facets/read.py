"""The facet read path: the org's (state, project) cells, sliced to the caller's view.

``facet_cells`` is the only place that decides where the cells come from; everything after it
(slicing by visibility and filters, labels, ordering) is the same whatever the source, so a
response does not depend on how the counts were obtained.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from facets.extensions import state
from models import Access, NotFound, Project
from models.events import Cell
from models.recount import recount_org


@dataclass(frozen=True)
class FacetFilter:
    """The caller's filters, normalized: states in first-seen order, no duplicates."""

    states: tuple[str, ...] = ()
    project_id: uuid.UUID | None = None


def facet_cells(access: Access) -> Mapping[Cell, int]:
    """The org's sandbox counts per (state, project) cell."""
    recount = recount_org(state().db, access.org_id)
    if recount is None:
        raise NotFound(f"Organization '{access.org_slug}' not found.")
    return recount.cells


def slice_cells(
    cells: Mapping[Cell, int], access: Access, flt: FacetFilter
) -> tuple[Counter[str], Counter[uuid.UUID]]:
    """Sum the cells the caller may see and the filters select, per state and per project."""
    by_state: Counter[str] = Counter()
    by_project: Counter[uuid.UUID] = Counter()
    for (cell_state, project_id), count in cells.items():
        if count <= 0 or not access.sees_project(project_id):
            continue
        if flt.states and cell_state not in flt.states:
            continue
        if flt.project_id is not None and project_id != flt.project_id:
            continue
        by_state[cell_state] += count
        if project_id is not None:
            by_project[project_id] += count
    return by_state, by_project


def project_labels(project_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    """Key and name of each project, by primary key."""
    ids = list(project_ids)
    if not ids:
        return {}
    with state().db.read_session() as session:
        rows = session.execute(
            select(Project.id, Project.key, Project.name).where(Project.id.in_(ids))
        )
        return {pid: (key, name) for pid, key, name in rows}


def facets_body(
    by_state: Counter[str],
    by_project: Counter[uuid.UUID],
    labels: Mapping[uuid.UUID, tuple[str, str]],
) -> dict[str, list[dict[str, Any]]]:
    """The ``SandboxFacetsResponse`` body, both lists in the contract's order."""
    states = [
        {"value": value, "count": count}
        for value, count in sorted(by_state.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    projects = []
    for project_id, count in by_project.items():
        label = labels.get(project_id)
        if label is None:  # deleted since the counts were read: not selectable any more
            continue
        key, name = label
        projects.append(
            {"project_id": project_id, "project_key": key, "project_name": name, "count": count}
        )
    projects.sort(
        key=lambda p: (-p["count"], p["project_name"].casefold(), p["project_key"], str(p["project_id"]))
    )
    return {"projects": projects, "states": states}


def read_facets(access: Access, flt: FacetFilter) -> dict[str, list[dict[str, Any]]]:
    """The facets of the caller's current view of the org."""
    by_state, by_project = slice_cells(facet_cells(access), access, flt)
    return facets_body(by_state, by_project, project_labels(by_project))
