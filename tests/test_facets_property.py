"""Property: for any org, caller and filter, the facets equal a brute-force count in Python.

Each example builds a fresh org (a new slug, not a new database) with projects whose names and
keys collide in case and order, sandboxes in some cells, a caller of some role with some
project memberships, and asks the endpoint through HTTP with filters written in every accepted
form. It then adds sandboxes and asks again, so answers after writes are checked too.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

STATES = ("running", "paused", "killed")
KEYS = ("a", "B", "b", "web", "Z")
NAMES = ("alpha", "Alpha", "BETA", "beta", "Zeta")  # case-sensitive order differs
MAX_PROJECTS = 4
slugs = itertools.count()
pytestmark = pytest.mark.cluster  # also on the Redis Cluster leg


@dataclass(frozen=True)
class Filter:
    """A state filter as the caller writes it (groups of comma-joined items) and a project."""

    groups: tuple[tuple[str, ...], ...]  # each group is one `state=` occurrence
    project: int | str | None  # a project index, "random", "foreign" or None

    @property
    def states(self) -> set[str]:
        return {item for group in self.groups for item in group if item}


cell_maps = st.dictionaries(
    st.tuples(st.sampled_from(STATES), st.one_of(st.none(), st.integers(0, MAX_PROJECTS - 1))),
    st.sampled_from([1, 1, 2]),  # small counts, so that ties are common
    max_size=8,
)
filters = st.builds(
    Filter,
    groups=st.lists(
        st.lists(st.sampled_from((*STATES, "")), min_size=1, max_size=3).map(tuple), max_size=3
    ).map(tuple),
    project=st.one_of(
        st.none(), st.integers(0, MAX_PROJECTS - 1), st.sampled_from(["random", "foreign"])
    ),
)


@st.composite
def scenarios(draw):
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=MAX_PROJECTS, unique=True))
    names = [draw(st.sampled_from(NAMES)) for _ in keys]
    in_range = lambda cells: {  # noqa: E731 - drop cells naming projects that were not drawn
        (s, p): n for (s, p), n in cells.items() if p is None or p < len(keys)
    }
    return {
        "projects": list(zip(keys, names, strict=True)),
        "cells": in_range(draw(cell_maps)),
        "later": in_range(draw(cell_maps)),
        "role": draw(st.sampled_from(["owner", "admin", "member"])),
        "memberships": draw(st.sets(st.integers(0, max(len(keys) - 1, 0)))) if keys else set(),
        "filters": draw(st.lists(filters, min_size=1, max_size=4)),
    }


def expected_facets(cells, projects, ids, role, memberships, flt, project_id) -> dict:
    """The facets by brute force over the sandboxes the caller may see and the filter selects."""
    by_state: Counter[str] = Counter()
    by_project: Counter[int] = Counter()
    for (state, p), n in cells.items():
        visible = role != "member" or p is None or p in memberships
        if not visible:
            continue
        if flt.states and state not in flt.states:
            continue
        if project_id is not None and (p is None or ids[p] != project_id):
            continue
        by_state[state] += n
        if p is not None:
            by_project[p] += n
    states = sorted(by_state.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [
        {
            "project_id": str(ids[p]),
            "project_key": projects[p][0],
            "project_name": projects[p][1],
            "count": n,
        }
        for p, n in by_project.items()
    ]
    rows.sort(
        key=lambda r: (-r["count"], r["project_name"].casefold(), r["project_key"], r["project_id"])
    )
    return {"states": [{"value": s, "count": n} for s, n in states], "projects": rows}


def query_string(flt: Filter, project_id: uuid.UUID | None) -> str:
    parts = [f"state={','.join(group)}" for group in flt.groups]
    if project_id is not None:
        parts.append(f"project_id={project_id}")
    return "&".join(parts)


@pytest.fixture
def foreign_project(world) -> uuid.UUID:
    """A project of another org, with sandboxes, that no example's caller may learn about."""
    world.org("foreign")
    project = world.project("foreign", "a", "alpha")
    world.sandboxes("foreign", project, "running", 2)
    world.sandboxes("foreign", None, "paused", 1)
    return project


def add_cells(world, slug, ids, cells) -> None:
    for (state, p), n in cells.items():
        world.sandboxes(slug, None if p is None else ids[p], state, n)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_facets_equal_a_brute_force_count(client, world, foreign_project, scenario):
    slug = f"prop-{next(slugs)}"
    world.org(slug)
    projects = scenario["projects"]
    ids = [world.project(slug, key, name) for key, name in projects]
    add_cells(world, slug, ids, scenario["cells"])
    role, memberships = scenario["role"], scenario["memberships"]
    caller = world.caller(slug, role, projects_=[ids[i] for i in sorted(memberships)])
    path = f"/api/v1/org/{slug}/sandboxes/facets"

    def project_id_of(flt: Filter) -> uuid.UUID | None:
        if flt.project is None:
            return None
        if flt.project == "random":
            return uuid.uuid4()
        if flt.project == "foreign":
            return foreign_project
        # an index past the drawn projects stands for a project that does not exist
        return ids[flt.project] if flt.project < len(ids) else uuid.uuid4()

    cells = Counter(scenario["cells"])
    for phase in ("before", "after"):
        for flt in scenario["filters"]:
            project_id = project_id_of(flt)
            response = client.get(f"{path}?{query_string(flt, project_id)}", headers=caller.headers)
            assert response.status_code == 200, response.json
            expected = expected_facets(cells, projects, ids, role, memberships, flt, project_id)
            assert response.json == expected, (phase, flt)
        if phase == "before":
            add_cells(world, slug, ids, scenario["later"])
            cells.update(scenario["later"])
