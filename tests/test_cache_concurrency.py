"""Several processes write one org while others read its facets: every read is exact.

Writers mutate through the HTTP test client and log each commit's (version, net deltas) with
a recording after-commit hook; readers call the read path in-process and keep the version
their access was read at. Afterwards the counts at every version are rebuilt offline by
summing the deltas in version order, and each read must equal them at its own version.

Real leg only: processes share nothing but PostgreSQL and Redis, which SQLite + fakeredis
cannot stand in for.
"""

from __future__ import annotations

import multiprocessing
import random
import time
import traceback
import uuid
from collections import Counter

import pytest
from conftest import TEST_DATABASE_URL, World, require_redis_server

from facets import create_app
from facets.counts.read import FacetFilter, read_facets
from facets.extensions import state
from models import load_access
from models.events import net_deltas
from models.recount import recount_org
from soak.servers import PrivateRedis

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.leg("real"),
    pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)"),
]

SLUG = "busy"
WRITERS = 2
READERS = 2
TRAFFIC_S = 3.0
MIN_OPS = 15  # each writer and reader does at least this much, however slow the machine
START_TIMEOUT_S = 60
RESULT_TIMEOUT_S = 60


def _writer(config, setup, seed, ready, start, results):
    """Random mutations of the org until the time is up; reports commits and failures."""
    try:
        app = create_app(config)
        commits = []
        with app.app_context():
            st = state()
            org_id = setup["org_id"]
            st.hooks.register(
                lambda done: commits.extend(
                    (c.version, net_deltas(list(c.events))) for c in done if c.org_id == org_id
                )
            )
        client = app.test_client()
        headers = {"Authorization": f"Bearer {setup['owner_key']}"}
        base = f"/api/v1/org/{SLUG}"
        projects = [None, *setup["projects"]]
        rng = random.Random(seed)
        mine: dict[str, str] = {}  # sandbox id -> state, only this writer's
        member_in_p2 = False
        failures = []

        def call(method, url, expected, body=None):
            response = client.open(base + url, method=method, json=body, headers=headers)
            if response.status_code != expected:
                failures.append((method, url, response.status_code, response.get_data(True)))
            return response

        ready.put(seed)
        start.wait(START_TIMEOUT_S)
        deadline = time.monotonic() + TRAFFIC_S
        n = 0
        while n < MIN_OPS or time.monotonic() < deadline:
            n += 1
            live = [s for s, st_ in mine.items() if st_ != "killed"]
            if seed == 0 and n % 7 == 0:  # project changes: empty deltas, new versions
                if n % 14 == 0:
                    p3 = setup["projects"][2]
                    call("PATCH", f"/projects/{p3}", 200, {"name": f"Ops {n}"})
                else:
                    p2 = setup["projects"][1]
                    if member_in_p2:
                        call("DELETE", f"/projects/{p2}/members/{setup['member_id']}", 204)
                    else:
                        body = {"email": setup["member_email"]}
                        call("POST", f"/projects/{p2}/members", 204, body)
                    member_in_p2 = not member_in_p2
                continue
            op = rng.choice(["create", "create", "state", "move", "delete"]) if live else "create"
            if op == "create":
                state_ = rng.choice(["running", "paused"])
                project = rng.choice(projects)
                r = call("POST", "/sandboxes", 201, {"project_id": project, "state": state_})
                if r.status_code == 201:
                    mine[r.json["id"]] = state_
            elif op == "delete":
                sandbox = rng.choice(live)
                call("DELETE", f"/sandboxes/{sandbox}", 204)
                del mine[sandbox]
            elif op == "state":
                sandbox = rng.choice(live)
                choices = ("running", "paused", "running", "paused", "killed")
                new = rng.choice([s for s in choices if s != mine[sandbox]])
                call("PATCH", f"/sandboxes/{sandbox}", 200, {"state": new})
                mine[sandbox] = new
            else:
                sandbox = rng.choice(live)
                call("PATCH", f"/sandboxes/{sandbox}", 200, {"project_id": rng.choice(projects)})
        with app.app_context():
            state().db.dispose()
        results.put(("writer", seed, commits, failures))
    except BaseException:  # report instead of dying silently
        results.put(("crash", seed, traceback.format_exc(), None))


def _reader(config, setup, seed, ready, start, results):
    """Read the facets through the read path until the time is up; keep each version."""
    try:
        app = create_app(config)
        p1 = uuid.UUID(setup["projects"][0])
        views = [
            (setup["owner_id"], FacetFilter()),
            (setup["owner_id"], FacetFilter(("running", "paused"))),
            (setup["owner_id"], FacetFilter((), p1)),
            (setup["member_id"], FacetFilter()),
            (setup["member_id"], FacetFilter(("killed", "paused"))),
        ]
        reads = []
        ready.put(seed)
        start.wait(START_TIMEOUT_S)
        deadline = time.monotonic() + TRAFFIC_S
        with app.app_context():
            st = state()
            n = 0
            while n < MIN_OPS or time.monotonic() < deadline:
                user_id, flt = views[n % len(views)]
                n += 1

                def load(user_id=user_id):
                    with st.db.read_session() as session:
                        return load_access(session, SLUG, user_id)

                result = read_facets(load(), flt, refresh=load)
                reads.append(
                    (
                        result.access.version,
                        result.access.project_ids,
                        flt,
                        {s["value"]: s["count"] for s in result.body["states"]},
                        {str(p["project_id"]): p["count"] for p in result.body["projects"]},
                        result.path,
                    )
                )
            st.db.dispose()
        results.put(("reader", seed, reads, None))
    except BaseException:
        results.put(("crash", seed, traceback.format_exc(), None))


def sliced(cells: Counter, project_ids, flt: FacetFilter) -> tuple[dict, dict]:
    """What a view of these cells should show (written apart from ``facets.counts.read``)."""
    by_state: Counter = Counter()
    by_project: Counter = Counter()
    for (state_, project), n in cells.items():
        if n == 0:
            continue
        if project is not None and project_ids is not None and project not in project_ids:
            continue
        if flt.states and state_ not in flt.states:
            continue
        if flt.project_id is not None and project != flt.project_id:
            continue
        by_state[state_] += n
        if project is not None:
            by_project[str(project)] += n
    return dict(by_state), dict(by_project)


@pytest.fixture
def shared_config(app_config, tmp_path):
    """The real leg's PostgreSQL, and a Redis all processes share (never the embedded one)."""
    config = {**app_config, "RATE_LIMITS_ENABLED": False}
    server = None
    if config["REDIS_URL"].startswith("fakeredis"):
        require_redis_server()
        server = PrivateRedis(tmp_path / "redis")
        server.start()
        config["REDIS_URL"] = server.url
    yield config
    if server is not None:
        server.stop()


def test_concurrent_writers_and_readers_every_read_is_exact_at_its_version(shared_config):
    app = create_app(shared_config)
    try:
        run_and_check(app, shared_config)
    finally:
        with app.app_context():
            state().db.dispose()
            state().redis.close()


def run_and_check(app, shared_config) -> None:
    """Set the org up, run the processes, check every read against the logged commits."""
    world = World(app)
    org_id = world.org(SLUG)
    projects = [world.project(SLUG, key) for key in ("p1", "p2", "p3")]
    owner = world.caller(SLUG, "owner")
    member = world.caller(SLUG, "member", projects_=[projects[0]])
    world.sandboxes(SLUG, projects[0], "running", 3)
    world.sandboxes(SLUG, None, "paused", 2)
    with app.app_context():
        start_recount = recount_org(state().db, org_id)
    setup = {
        "org_id": org_id,
        "projects": [str(p) for p in projects],
        "owner_key": owner.key,
        "owner_id": owner.user_id,
        "member_id": member.user_id,
        "member_email": member.email,
    }

    ctx = multiprocessing.get_context("spawn")
    ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_writer, args=(shared_config, setup, i, ready, start, results))
        for i in range(WRITERS)
    ] + [
        ctx.Process(target=_reader, args=(shared_config, setup, i, ready, start, results))
        for i in range(READERS)
    ]
    for proc in procs:
        proc.start()
    outcomes = []
    try:
        for _ in procs:
            ready.get(timeout=START_TIMEOUT_S)
        start.set()
        for _ in procs:
            outcomes.append(results.get(timeout=TRAFFIC_S + RESULT_TIMEOUT_S))
    finally:
        start.set()
        for proc in procs:
            proc.join(RESULT_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for q in (ready, results):
            q.close()
            q.join_thread()
    crashes = [o[2] for o in outcomes if o[0] == "crash"]
    assert not crashes, crashes[0]

    commits = [c for kind, _, logged, _ in outcomes if kind == "writer" for c in logged]
    failures = [f for kind, _, _, failed in outcomes if kind == "writer" for f in failed]
    reads = [r for kind, _, logged, _ in outcomes if kind == "reader" for r in logged]
    assert failures == []
    assert len(commits) >= MIN_OPS and len(reads) >= READERS * MIN_OPS

    # versions are gap-free, each named by exactly one commit, right after the setup's
    v0 = start_recount.version
    versions = sorted(v for v, _ in commits)
    assert versions == list(range(v0 + 1, v0 + 1 + len(commits)))

    cells = Counter(start_recount.cells)
    at_version = {v0: Counter(cells)}
    for version, deltas in sorted(commits, key=lambda c: c[0]):
        cells.update(deltas)
        assert all(n >= 0 for n in cells.values()), version
        at_version[version] = Counter(cells)

    paths: Counter = Counter()
    wrong = []
    for version, project_ids, flt, by_state, by_project, path in reads:
        assert version in at_version, version
        paths[path] += 1
        if (by_state, by_project) != sliced(at_version[version], project_ids, flt):
            # for the report: which versions' counts the read did show
            got = (by_state, by_project)
            shown = [v for v in at_version if sliced(at_version[v], project_ids, flt) == got]
            wrong.append((path, version, flt, project_ids, shown))
    assert wrong == [], f"{len(wrong)} of {len(reads)} reads differ from their version: {wrong[:5]}"
    assert paths["warm"] > 0, paths

    with app.app_context():
        final = recount_org(state().db, org_id)
    assert final.version == versions[-1]
    assert final.cells == {cell: n for cell, n in cells.items() if n}
    result = app.test_cli_runner().invoke(args=["facets", "verify"])
    assert (result.exit_code, result.output) == (0, "cache agrees with SQL for 1 orgs\n")
