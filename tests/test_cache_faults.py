"""The counter cache under faults: Redis down, restarted empty or from an old snapshot,
flushed during traffic, an after-commit update lost, updates duplicated and reordered.

Each test runs the app against a private ``redis-server`` (``soak/servers.py``) that it
may kill, on whichever database the leg uses. Every facets response is compared with a
brute-force count of the sandboxes the test created, and every mutation must succeed.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
from conftest import after_commit_hooks_off, counted, served
from sqlalchemy import select

from facets import create_app
from facets.extensions import state
from facets.ops.metrics import REDIS_ERRORS
from models import Org
from models.events import net_deltas

SLUG = "acme"


def redis_errors(op: str) -> float:
    return counted(REDIS_ERRORS, op=op)


@pytest.fixture
def app(app_config, redis_server):
    """The app of this leg's database, on the private Redis.

    Rate limits are not under test, and the body memo is off: every read reaches the Redis layer.
    """
    app = create_app(
        {
            **app_config,
            "REDIS_URL": redis_server.url,
            "RATE_LIMITS_ENABLED": False,
            "FACETS_BODY_MEMO_BYTES": 0,
        }
    )
    yield app
    with app.app_context():
        state().db.dispose()
        state().redis.close()


@dataclass(frozen=True)
class View:
    """Whose facets, with which filters."""

    name: str
    caller: object
    sees: frozenset[uuid.UUID] | None  # None: every project
    states: tuple[str, ...] = ()
    project_id: uuid.UUID | None = None

    def query(self) -> dict:
        query = {}
        if self.states:
            query["state"] = ",".join(self.states)
        if self.project_id is not None:
            query["project_id"] = str(self.project_id)
        return query


@dataclass
class Traffic:
    """Random sandbox mutations through the API, and a model of what they leave behind."""

    client: object
    owner: object
    projects: list[uuid.UUID]
    rng: random.Random
    sandboxes: dict[uuid.UUID, tuple[str, uuid.UUID | None]] = field(default_factory=dict)

    def url(self, suffix: str = "") -> str:
        return f"/api/v1/org/{SLUG}/sandboxes{suffix}"

    def create(self) -> None:
        project = self.rng.choice([None, *self.projects])
        state_ = self.rng.choice(["running", "paused"])
        response = self.client.post(
            self.url(),
            json={"project_id": project and str(project), "state": state_},
            headers=self.owner.headers,
        )
        assert response.status_code == 201, response.json
        self.sandboxes[uuid.UUID(response.json["id"])] = (state_, project)

    def mutate(self) -> None:
        """One random create, state change, move or delete; it must succeed."""
        live = sorted((s for s, (st, _) in self.sandboxes.items() if st != "killed"), key=str)
        op = self.rng.choice(["create", "state", "move", "delete"]) if live else "create"
        if op == "create":
            return self.create()
        sandbox = self.rng.choice(live)
        state_, project = self.sandboxes[sandbox]
        if op == "delete":
            response = self.client.delete(self.url(f"/{sandbox}"), headers=self.owner.headers)
            assert response.status_code == 204, response.json
            del self.sandboxes[sandbox]
            return None
        if op == "state":
            state_ = self.rng.choice([s for s in ("running", "paused", "killed") if s != state_])
            body = {"state": state_}
        else:
            project = self.rng.choice([p for p in (None, *self.projects) if p != project])
            body = {"project_id": project and str(project)}
        response = self.client.patch(self.url(f"/{sandbox}"), json=body, headers=self.owner.headers)
        assert response.status_code == 200, response.json
        self.sandboxes[sandbox] = (state_, project)
        return None

    def expected(self, view: View) -> tuple[dict[str, int], dict[str, int]]:
        """The brute-force counts of a view: per state, and per project (no-project omitted)."""
        by_state: Counter[str] = Counter()
        by_project: Counter[str] = Counter()
        for state_, project in self.sandboxes.values():
            if project is not None and view.sees is not None and project not in view.sees:
                continue
            if view.states and state_ not in view.states:
                continue
            if view.project_id is not None and project != view.project_id:
                continue
            by_state[state_] += 1
            if project is not None:
                by_project[str(project)] += 1
        return dict(by_state), dict(by_project)

    def read(self, view: View) -> str:
        """Get a view's facets, check them against the model; returns the path that served it."""
        before = served()
        response = self.client.get(
            self.url("/facets"), query_string=view.query(), headers=view.caller.headers
        )
        assert response.status_code == 200, response.json
        got = (
            {s["value"]: s["count"] for s in response.json["states"]},
            {p["project_id"]: p["count"] for p in response.json["projects"]},
        )
        assert got == self.expected(view), view.name
        (path,) = (served() - before).elements()
        return path

    def read_all(self, views: list[View]) -> list[str]:
        return [self.read(view) for view in views]


@pytest.fixture
def traffic(app, client, world) -> tuple[Traffic, list[View]]:
    """acme with projects web, api, ops and a few sandboxes; the views the tests read."""
    world.org(SLUG)
    web, api, ops = (world.project(SLUG, key) for key in ("web", "api", "ops"))
    owner = world.caller(SLUG, "owner")
    member = world.caller(SLUG, "member", projects_=[web, ops])
    t = Traffic(client, owner, [web, api, ops], random.Random(4))
    for _ in range(12):
        t.create()
    everything = None
    views = [
        View("owner", owner, everything),
        View("owner running+killed", owner, everything, ("running", "killed")),
        View("owner web", owner, everything, (), web),
        View("member", member, frozenset({web, ops})),
        View("member paused", member, frozenset({web, ops}), ("paused",)),
    ]
    return t, views


def verify(runner) -> None:
    result = runner.invoke(args=["facets", "verify"])
    assert result.exit_code == 0, result.output
    assert "cache agrees with SQL for 1 orgs" in result.output


def assert_heals(t: Traffic, views: list[View], runner) -> None:
    """The next read recounts and installs; every read after it is warm; verify agrees."""
    assert t.read_all(views) == ["cold"] + ["warm"] * (len(views) - 1)
    t.mutate()
    assert t.read_all(views) == ["warm"] * len(views)
    verify(runner)


def test_redis_down_during_reads_and_writes_then_restarted_empty(traffic, redis_server, runner):
    t, views = traffic
    t.read_all(views)
    assert t.read_all(views) == ["warm"] * len(views)
    read_errors, apply_errors = redis_errors("read"), redis_errors("apply")

    redis_server.stop()
    for _ in range(8):
        t.mutate()
        assert set(t.read_all(views)) == {"cold"}
    assert redis_errors("read") >= read_errors + 8 * len(views)
    assert redis_errors("apply") >= apply_errors + 8

    redis_server.start()
    assert_heals(t, views, runner)


def test_redis_back_from_an_old_snapshot_holds_a_stale_hash(traffic, redis_server, runner):
    """Redis restarts with the hash of an older version: it must not be served."""
    t, views = traffic
    t.read_all(views)
    redis_server.snapshot()
    redis_server.stop()
    for _ in range(5):
        t.mutate()
    t.read_all(views)
    redis_server.start(keep_snapshot=True)
    probe = redis_server.client()
    try:
        assert probe.keys("facets:*:cells"), "the snapshot should have brought the old hash back"
    finally:
        probe.close()
    assert_heals(t, views, runner)


@pytest.mark.parametrize("evicted", ["cells", "totals"])
def test_one_hash_evicted_alone_is_not_built_on(traffic, redis_server, runner, evicted):
    """A maxmemory policy may evict one of the org's two hashes: the next write must not
    rebuild it from its own deltas (the owner's unfiltered view reads ``totals`` alone)."""
    t, views = traffic
    t.read_all(views)
    probe = redis_server.client()
    try:
        (key,) = probe.keys(f"facets:*:{evicted}")
        probe.delete(key)
    finally:
        probe.close()
    t.create()  # a creation only adds: a removal would drive a rebuilt totals negative (caught)
    assert_heals(t, views, runner)


def test_redis_flapping_during_traffic(traffic, redis_server, runner):
    t, views = traffic
    for round_ in range(4):
        for _ in range(3):
            t.mutate()
            t.read_all(views)
        if round_ % 2 == 0:
            redis_server.stop()
        else:
            redis_server.start()
    assert_heals(t, views, runner)


def test_flushall_during_traffic(traffic, redis_server, runner):
    t, views = traffic
    stop = threading.Event()
    flushes = []

    def flush_repeatedly():
        rng = random.Random(7)
        client = redis_server.client()
        try:
            while not stop.wait(rng.uniform(0.0, 0.01)):
                client.flushall()
                flushes.append(1)
        finally:
            client.close()

    flusher = threading.Thread(target=flush_repeatedly)
    flusher.start()
    try:
        for _ in range(15):
            t.mutate()
            t.read_all(views)
    finally:
        stop.set()
        flusher.join()
    assert len(flushes) > 5
    redis_server.flushall()
    assert_heals(t, views, runner)


def test_lost_after_commit_update(app, traffic, runner):
    """A crash between commit and cache update leaves the hash behind: then nothing, one or
    two delivered commits follow before the next read."""
    t, views = traffic
    t.read_all(views)
    for commits_after in (0, 1, 2):
        with after_commit_hooks_off(app):
            t.mutate()
        for _ in range(commits_after):
            t.mutate()
        assert_heals(t, views, runner)


@dataclass
class Recorder:
    """An after-commit hook that keeps every commit's (version, net deltas)."""

    commits: list[tuple[uuid.UUID, int, dict]] = field(default_factory=list)

    def __call__(self, commits) -> None:
        for commit in commits:
            self.commits.append((commit.org_id, commit.version, net_deltas(list(commit.events))))


def test_duplicate_and_reordered_delivery(app, traffic, runner):
    """Updates held back, then delivered shuffled and repeated: reads stay exact throughout."""
    t, views = traffic
    with app.app_context():
        st = state()
    for seed, read_between in [(0, False), (1, False), (2, True), (3, True)]:
        t.read_all(views)
        recorder = Recorder()
        st.hooks.hooks[:] = [recorder]
        try:
            for _ in range(6):
                t.mutate()
        finally:
            st.hooks.hooks[:] = [st.cache.after_commit]
        versions = [v for _, v, _ in recorder.commits]
        assert versions == list(range(versions[0], versions[0] + len(versions)))

        rng = random.Random(seed)
        deliveries = recorder.commits + rng.sample(recorder.commits, 3)
        rng.shuffle(deliveries)
        outcomes = []
        for org_id, version, deltas in deliveries:
            with app.app_context():
                outcomes.append(st.cache.apply(org_id, version, deltas))
            if read_between:
                t.read_all(views)
        assert "error" not in outcomes and "corrupt" not in outcomes, outcomes
        if not read_between:  # no recount happened: the hash caught up on the deltas alone
            assert "applied" in outcomes and "buffered" in outcomes, outcomes
        assert t.read_all(views) == ["warm"] * len(views), seed
        verify(runner)


def test_hash_labelled_ahead_of_sql_is_never_served(app, traffic, runner):
    """The database goes back in time (restored from a backup) while Redis keeps its hashes.

    A label above the org's committed version cannot come from a live commit (a version is
    applied only after it committed), so the hash is not to be trusted; once SQL's version
    reaches the label, its counts must not be served as if they were of that version.
    """
    t, views = traffic
    t.read_all(views)
    with app.app_context():
        st = state()
        with st.db.read_session() as session:
            org_id = session.scalar(select(Org.id).where(Org.slug == SLUG))
        cells, totals, _ = st.cache.keys(org_id)
        label = int(st.redis.hget(cells, "v"))
        for key in (cells, totals):  # as if SQL had been restored to one version earlier
            st.redis.hset(key, "v", label + 1)
    t.read_all(views)
    t.mutate()  # SQL now reaches the hash's label, with a different change
    t.read_all(views)
    verify(runner)
