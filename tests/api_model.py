"""A model of API writes for property tests: Hypothesis strategies and the ``Scenario``.

Operations name sandboxes, projects and callers by index into what exists so far (``pick``),
so Hypothesis can shrink a failing sequence. ``Scenario`` makes one fresh org per example,
applies operations through the HTTP API, and checks the facets and the list endpoint against
a brute-force count of the rows. Used by ``test_api_property`` and ``test_body_memo``.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter

from hypothesis import strategies as st
from sqlalchemy import select

from facets.extensions import state
from models import Project, ProjectMember, Sandbox

ROLES = ("owner", "admin", "member", "member")
STATES = ("running", "paused", "killed")
KEYS = ("alpha", "beta", "gamma", "delta")
NAMES = ("Alpha", "alpha", "Beta", "Gamma")  # equal names up to case exercise the tiebreaks
EXPECTED_STATUSES = {200, 201, 204, 403, 404, 409}

caller = st.integers(0, len(ROLES) - 1)
slot = st.integers(0, 50)
project_slot = st.none() | slot
member = st.integers(2, len(ROLES) - 1)

view = st.tuples(
    caller,
    st.lists(st.sampled_from(STATES), max_size=3, unique=True),
    project_slot,
    st.integers(1, 7),
)
create = st.tuples(st.just("create"), caller, project_slot, st.sampled_from(STATES[:2]))
operation = st.one_of(
    create,
    st.tuples(st.just("check"), view),
    create,  # twice: sandboxes to act on keep the other operations interesting
    st.tuples(st.just("set_state"), caller, slot, st.sampled_from(STATES)),
    st.tuples(st.just("move"), caller, slot, project_slot),
    st.tuples(st.just("delete"), caller, slot),
    st.tuples(st.just("create_project"), caller, st.sampled_from(KEYS), st.sampled_from(NAMES)),
    st.tuples(
        st.just("rename_project"),
        caller,
        slot,
        st.none() | st.sampled_from(KEYS),
        st.sampled_from(NAMES),
    ),
    st.tuples(st.just("delete_project"), caller, slot),
    st.tuples(st.just("add_member"), caller, slot, member),
    st.tuples(st.just("remove_member"), caller, slot, member),
)
org_numbers = itertools.count()


def pick(pool: list, index: int | None):
    """The pool entry an index names (cycling), or a fresh id nothing has."""
    if index is None:
        return None
    return pool[index % len(pool)] if pool else uuid.uuid4()


class Scenario:
    """One example's org: its callers, the ids made so far, and the API calls."""

    def __init__(self, client, world) -> None:
        self.client = client
        self.slug = f"prop-{next(org_numbers)}"
        self.org_id = world.org(self.slug)
        self.callers = [world.caller(self.slug, role) for role in ROLES]
        self.projects = [world.project(self.slug, key) for key in ("seed-1", "seed-2")]
        self.sandboxes: list[uuid.UUID] = []
        self.base = f"/api/v1/org/{self.slug}"

    def call(self, method: str, path: str, who: int, body=None):
        response = self.client.open(
            self.base + path, method=method, json=body, headers=self.callers[who].headers
        )
        assert response.status_code in EXPECTED_STATUSES, (method, path, body, response.json)
        return response

    def apply(self, op) -> None:
        kind, who, *args = op
        if kind == "check":  # between writes, so warm counts are checked as well as cold ones
            self.check(*who)
        elif kind == "create":
            project = pick(self.projects, args[0])
            body = {"state": args[1], "project_id": str(project) if project else None}
            response = self.call("POST", "/sandboxes", who, body)
            if response.status_code == 201:
                self.sandboxes.append(uuid.UUID(response.json["id"]))
        elif kind == "set_state":
            sandbox = pick(self.sandboxes, args[0])
            self.call("PATCH", f"/sandboxes/{sandbox}", who, {"state": args[1]})
        elif kind == "move":
            sandbox, project = pick(self.sandboxes, args[0]), pick(self.projects, args[1])
            body = {"project_id": str(project) if project else None}
            self.call("PATCH", f"/sandboxes/{sandbox}", who, body)
        elif kind == "delete":
            self.call("DELETE", f"/sandboxes/{pick(self.sandboxes, args[0])}", who)
        elif kind == "create_project":
            response = self.call("POST", "/projects", who, {"key": args[0], "name": args[1]})
            if response.status_code == 201:
                self.projects.append(uuid.UUID(response.json["id"]))
        elif kind == "rename_project":
            body = {"name": args[2]} | ({"key": args[1]} if args[1] else {})
            self.call("PATCH", f"/projects/{pick(self.projects, args[0])}", who, body)
        elif kind == "delete_project":
            self.call("DELETE", f"/projects/{pick(self.projects, args[0])}", who)
        elif kind == "add_member":
            email = self.callers[args[1]].email
            path = f"/projects/{pick(self.projects, args[0])}/members"
            self.call("POST", path, who, {"email": email})
        elif kind == "remove_member":
            user_id = self.callers[args[1]].user_id
            path = f"/projects/{pick(self.projects, args[0])}/members/{user_id}"
            self.call("DELETE", path, who)

    def brute_force(self, who: int, states: list[str], project_id: uuid.UUID | None):
        """The ids the caller should see under these filters, and the expected facets."""
        with state().db.read_session() as session:
            rows = session.execute(
                select(Sandbox.id, Sandbox.state, Sandbox.project_id).where(
                    Sandbox.org_id == self.org_id
                )
            ).all()
            labels = {
                pid: (key, name)
                for pid, key, name in session.execute(
                    select(Project.id, Project.key, Project.name).where(
                        Project.org_id == self.org_id
                    )
                )
            }
            mine = set(
                session.scalars(
                    select(ProjectMember.project_id).where(
                        ProjectMember.user_id == self.callers[who].user_id
                    )
                )
            )
        sees_all = ROLES[who] != "member"
        visible = [
            r
            for r in rows
            if (r.project_id is None or sees_all or r.project_id in mine)
            and (not states or r.state in states)
            and (project_id is None or r.project_id == project_id)
        ]
        by_state = Counter(r.state for r in visible)
        by_project = Counter(r.project_id for r in visible if r.project_id is not None)
        facets = {
            "states": [
                {"value": s, "count": n}
                for s, n in sorted(by_state.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "projects": sorted(
                (
                    {
                        "project_id": str(pid),
                        "project_key": labels[pid][0],
                        "project_name": labels[pid][1],
                        "count": n,
                    }
                    for pid, n in by_project.items()
                ),
                key=lambda p: (
                    -p["count"],
                    p["project_name"].casefold(),
                    p["project_key"],
                    p["project_id"],
                ),
            ),
        }
        return {str(r.id) for r in visible}, facets

    def listed(self, who: int, query: str, limit: int) -> list[str]:
        """Every id the list endpoint returns across all pages."""
        ids, cursor = [], None
        while True:
            url = f"/sandboxes?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            page = self.call("GET", url, who).json
            ids.extend(s["id"] for s in page["sandboxes"])
            cursor = page["next_cursor"]
            if cursor is None:
                return ids

    def check(self, who: int, states: list[str], project_slot: int | None, limit: int) -> None:
        project_id = pick(self.projects, project_slot)
        params = [f"state={s}" for s in states]
        if project_id is not None:
            params.append(f"project_id={project_id}")
        query = "&".join(params)
        expected_ids, expected_facets = self.brute_force(who, states, project_id)
        facets = self.call("GET", f"/sandboxes/facets?{query}", who).json
        assert facets == expected_facets
        listed = self.listed(who, query, limit)
        assert len(listed) == len(set(listed))
        assert set(listed) == expected_ids
        assert sum(entry["count"] for entry in facets["states"]) == len(listed)
