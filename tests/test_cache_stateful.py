"""Hypothesis stateful test: whatever happens to Redis and to the after-commit updates, every
caller's facets equal a brute-force count of the database.

Rules: every mutation (each delivered normally, dropped as by a crash after commit, or held
back to arrive late), project deletes, FLUSHALL, late deliveries out of order and twice,
rebuilds interleaved with mutations, and mutations and reads while Redis is unreachable.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from conftest import World, redis_down
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from facets.extensions import state
from models.recount import recount_org
from models.services import projects as project_service
from models.services import sandboxes as sandbox_service
from models.services.common import lock_access

STATES = ("running", "paused", "killed")
NAMES = ("Alpha", "alpha", "Beta", "beta", "Gamma")
DELIVERY = st.sampled_from(["normal", "normal", "drop", "hold"])
pytestmark = pytest.mark.cluster  # also on the Redis Cluster leg


@pytest.fixture
def app_config(app_config):
    """The body memo off: every read reaches the Redis layer, which is under test."""
    return {**app_config, "FACETS_BODY_MEMO_BYTES": 0}


def expected_facets(sandboxes, projects, visible, states=(), project_id=None):
    """The facets body by brute force over (state, project) rows."""
    rows = [
        (s, p)
        for s, p in sandboxes.values()
        if (visible is None or p is None or p in visible)
        and (not states or s in states)
        and (project_id is None or p == project_id)
    ]
    by_state = Counter(s for s, _ in rows)
    by_project = Counter(p for _, p in rows if p is not None)
    project_entries = sorted(
        (
            {
                "count": n,
                "project_id": str(p),
                "project_key": projects[p][0],
                "project_name": projects[p][1],
            }
            for p, n in by_project.items()
        ),
        key=lambda e: (
            -e["count"],
            e["project_name"].casefold(),
            e["project_key"],
            e["project_id"],
        ),
    )
    return {
        "projects": project_entries,
        "states": [
            {"count": n, "value": s}
            for s, n in sorted(by_state.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }


class FacetsMachine(RuleBasedStateMachine):
    def __init__(self, app, client, runner):
        super().__init__()
        self.app, self.client, self.runner = app, client, runner
        self.slug = "m" + uuid.uuid4().hex[:12]
        world = World(app)
        self.org_id = world.org(self.slug)
        self.owner = world.caller(self.slug, "owner")
        self.member = world.caller(self.slug, "member")
        self.sandboxes: dict[uuid.UUID, tuple[str, uuid.UUID | None]] = {}
        self.projects: dict[uuid.UUID, tuple[str, str]] = {}
        self.member_projects: set[uuid.UUID] = set()
        self.late = []
        self.delivery = "normal"
        self.keys = 0
        with app.app_context():
            self.cache = state().cache
            state().hooks.hooks[:] = [self._deliver]

    # -- plumbing -------------------------------------------------------------------------
    def _deliver(self, commits):
        if self.delivery == "normal":
            self.cache.after_commit(commits)
        elif self.delivery == "hold":
            self.late.extend(commits)

    def _mutate(self, delivery, change):
        self.delivery = delivery
        try:
            with self.app.app_context(), state().unit_of_work() as uow:
                access = lock_access(uow, org_slug=self.slug, user_id=self.owner.user_id)
                return change(uow, access)
        finally:
            self.delivery = "normal"

    def _pick(self, mapping, index):
        return sorted(mapping)[index % len(mapping)]

    # -- mutations ------------------------------------------------------------------------
    @rule(project=st.integers(0, 5), running=st.booleans(), delivery=DELIVERY)
    def create_sandbox(self, project, running, delivery):
        project_id = self._pick(self.projects, project) if self.projects and project else None
        new_state = "running" if running else "paused"
        sandbox = self._mutate(
            delivery,
            lambda uow, access: sandbox_service.create_sandbox(
                uow, access=access, project_id=project_id, state=new_state
            ),
        )
        self.sandboxes[sandbox.id] = (new_state, project_id)

    @precondition(lambda self: self.sandboxes)
    @rule(index=st.integers(0, 50), new_state=st.sampled_from(STATES), delivery=DELIVERY)
    def set_state(self, index, new_state, delivery):
        sandbox_id = self._pick(self.sandboxes, index)
        old_state, project_id = self.sandboxes[sandbox_id]
        if old_state == "killed":
            return
        self._mutate(
            delivery,
            lambda uow, access: sandbox_service.update_sandbox(
                uow, access=access, sandbox_id=sandbox_id, state=new_state
            ),
        )
        self.sandboxes[sandbox_id] = (new_state, project_id)

    @precondition(lambda self: self.sandboxes)
    @rule(index=st.integers(0, 50), project=st.integers(0, 5), delivery=DELIVERY)
    def move(self, index, project, delivery):
        sandbox_id = self._pick(self.sandboxes, index)
        current_state, _ = self.sandboxes[sandbox_id]
        if current_state == "killed":
            return
        project_id = self._pick(self.projects, project) if self.projects and project else None
        self._mutate(
            delivery,
            lambda uow, access: sandbox_service.update_sandbox(
                uow, access=access, sandbox_id=sandbox_id, project_id=project_id
            ),
        )
        self.sandboxes[sandbox_id] = (current_state, project_id)

    @precondition(lambda self: self.sandboxes)
    @rule(index=st.integers(0, 50), delivery=DELIVERY)
    def delete_sandbox(self, index, delivery):
        sandbox_id = self._pick(self.sandboxes, index)
        self._mutate(
            delivery,
            lambda uow, access: sandbox_service.delete_sandbox(
                uow, access=access, sandbox_id=sandbox_id
            ),
        )
        del self.sandboxes[sandbox_id]

    @precondition(lambda self: len(self.projects) < 5)
    @rule(name=st.sampled_from(NAMES), delivery=DELIVERY)
    def create_project(self, name, delivery):
        self.keys += 1
        key = f"k{self.keys}"
        project = self._mutate(
            delivery,
            lambda uow, access: project_service.create_project(
                uow, access=access, key=key, name=name
            ),
        )
        self.projects[project.id] = (key, name)

    @precondition(lambda self: self.projects)
    @rule(index=st.integers(0, 5), name=st.sampled_from(NAMES), delivery=DELIVERY)
    def rename_project(self, index, name, delivery):
        project_id = self._pick(self.projects, index)
        self._mutate(
            delivery,
            lambda uow, access: project_service.update_project(
                uow, access=access, project_id=project_id, name=name
            ),
        )
        self.projects[project_id] = (self.projects[project_id][0], name)

    @precondition(lambda self: self.projects)
    @rule(index=st.integers(0, 5), delivery=DELIVERY)
    def delete_project(self, index, delivery):
        project_id = self._pick(self.projects, index)
        self._mutate(
            delivery,
            lambda uow, access: project_service.delete_project(
                uow, access=access, project_id=project_id
            ),
        )
        del self.projects[project_id]
        self.member_projects.discard(project_id)
        for sandbox_id, (s, p) in self.sandboxes.items():
            if p == project_id:
                self.sandboxes[sandbox_id] = (s, None)

    @precondition(lambda self: self.projects)
    @rule(index=st.integers(0, 5), delivery=DELIVERY)
    def toggle_member(self, index, delivery):
        project_id = self._pick(self.projects, index)
        if project_id in self.member_projects:
            self._mutate(
                delivery,
                lambda uow, access: project_service.remove_project_member(
                    uow, access=access, project_id=project_id, user_id=self.member.user_id
                ),
            )
            self.member_projects.discard(project_id)
        else:
            self._mutate(
                delivery,
                lambda uow, access: project_service.add_project_member(
                    uow, access=access, project_id=project_id, email=self.member.email
                ),
            )
            self.member_projects.add(project_id)

    # -- faults ---------------------------------------------------------------------------
    @rule()
    def flush_redis(self):
        self.cache.redis.flushdb()  # FLUSHALL, limited to the test database

    @precondition(lambda self: self.late)
    @rule(data=st.data())
    def deliver_late(self, data):
        late = data.draw(st.permutations(self.late))
        twice = data.draw(st.lists(st.sampled_from(self.late), max_size=3))
        with self.app.app_context():
            for commit in [*late, *twice]:
                self.cache.after_commit([commit])
        self.late = []

    @rule()
    def rebuild(self):
        result = self.runner.invoke(args=["facets", "rebuild", "--org", self.slug])
        assert result.exit_code == 0, result.output

    @rule(running=st.booleans())
    def mutate_and_read_while_redis_is_down(self, running):
        with redis_down(self.app):
            self.create_sandbox(0, running, "normal")
            self.check_facets()

    # -- the invariant --------------------------------------------------------------------
    @invariant()
    def check_facets(self):
        some_project = sorted(self.projects)[0] if self.projects else uuid.uuid4()
        views = [
            (self.owner, None, {}),
            (self.owner, None, {"state": "running,killed"}),
            (self.owner, None, {"project_id": str(some_project)}),
            (self.member, self.member_projects, {}),
            (self.member, self.member_projects, {"state": "paused"}),
            (
                self.member,
                self.member_projects,
                {"project_id": str(some_project), "state": "running"},
            ),
        ]
        with self.app.app_context():
            org_version = recount_org(state().db, self.org_id).version
        for caller, visible, query in views:
            response = self.client.get(
                f"/api/v1/org/{self.slug}/sandboxes/facets",
                headers=caller.headers,
                query_string=query,
            )
            assert response.status_code == 200, response.json
            assert response.headers["X-Facets-Version"] == str(org_version)
            states = tuple(query.get("state", "").split(",")) if "state" in query else ()
            project_id = uuid.UUID(query["project_id"]) if "project_id" in query else None
            assert response.json == expected_facets(
                self.sandboxes, self.projects, visible, states, project_id
            ), (caller is self.owner, query)


def test_facets_stay_exact_under_faults(app, client, runner):
    run_state_machine_as_test(
        lambda: FacetsMachine(app, client, runner),
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
