"""The counter cache on a real Redis Cluster under faults, with readers and writers running.

Each test starts its own 3-master, 3-replica cluster (``soak/cluster.py``) and serves the
app of the real leg's PostgreSQL on it over HTTP from this process (a threaded WSGI server;
rate limits as the suites configure them, the body memo off so every read reaches Redis).
The soak's clients run meanwhile: readers judge every answer against SQL at its
``X-Facets-Version`` (``soak.oracle``), writers record what was acknowledged. Mid-traffic one
fault: a master SIGKILLed and its replica promoted, 2,000 slots migrated, or every node
restarted empty. Afterwards no request failed, no answer differed from SQL at its version,
no acknowledged write is missing, ``flask facets verify`` is clean and reads are warm again.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from conftest import free_port, require_installed, served

from werkzeug.serving import make_server

from facets import create_app
from facets.counts.cache import CounterCache
from facets.extensions import state
from soak.cluster import LocalCluster
from soak.harness import (
    REQUESTS_PER_SECOND_CAP,
    Traffic,
    check_acknowledged,
    seed_accounts,
    seed_projects,
)
from soak.oracle import Oracle
from soak.report import Report
from soak.traffic import FACETS_PATH, VERSION_HEADER, Reader, Writer, call

pytestmark = pytest.mark.leg("real")

BEFORE_S, AFTER_S = 3.0, 4.0
FAULTS = {
    "failover": lambda cluster: cluster.kill_master_and_promote(),
    "reshard": lambda cluster: cluster.reshard(2000),
    "restart": lambda cluster: cluster.restart_empty(),
}


@pytest.fixture
def cluster(tmp_path):
    require_installed(
        [p for p in ("redis-server", "redis-cli") if not shutil.which(p)],
        "install them with: apt-get install -y redis-server",
    )
    cluster = LocalCluster(tmp_path / "cluster")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def served_app(app_config, cluster):
    """The app on the cluster, answering HTTP on a free loopback port; yields (app, URL)."""
    config = {**app_config, "REDIS_URL": cluster.url, "FACETS_BODY_MEMO_BYTES": 0}
    app = create_app(config)
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, config, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    with app.app_context():
        state().db.dispose()
        state().redis.close()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_cluster_fault_under_traffic(leg, cluster, served_app, fault):
    app, config, base = served_app
    org_id, owner, member = seed_accounts(config)
    projects = seed_projects(base, owner, member)
    oracle = Oracle(config["DATABASE_URL"], org_id)
    report = Report(BEFORE_S + AFTER_S)
    stop, allowed = threading.Event(), threading.Event()
    common = {
        "base_url": base,
        "org": "soak",
        "stop": stop,
        "max_requests": int((BEFORE_S + AFTER_S) * REQUESTS_PER_SECOND_CAP),
    }
    try:
        readers = [
            Reader(callers=[owner, member], projects=projects, oracle=oracle, seed=i, **common)
            for i in range(2)
        ]
        writers = [
            Writer(caller=owner, projects=[*projects, None], allowed=allowed, seed=50, **common),
            Writer(caller=member, projects=[projects[0], None], allowed=allowed, seed=51, **common),
        ]
        traffic = Traffic.start(readers=readers, writers=writers, stop=stop, allowed=allowed)
        try:
            traffic.sleep_until(BEFORE_S)
            FAULTS[fault](cluster)
            report.faults.append((BEFORE_S, fault))
            traffic.sleep_until(BEFORE_S + AFTER_S)
        finally:
            traffic.finish(report)
        check_acknowledged(oracle, writers, report)
    finally:
        oracle.dispose()
    result = app.test_cli_runner().invoke(args=["facets", "verify"])
    report.verify_rc, report.verify_output = result.exit_code, result.output
    assert report.failures() == [], report.summary()
    assert report.acknowledged > 0 and report.verified > 0

    before = served()
    time.sleep(0.3)  # the client reads the slot map again after a fault at most this often
    for _ in range(2):
        _, response = call(base, "GET", FACETS_PATH.format(org="soak"), headers=owner.headers)
        assert response is not None and response.status_code == 200
    assert (served() - before)["warm"] >= 1, served() - before


def test_a_promoted_replica_that_missed_acknowledged_writes_is_recounted_never_served(
    leg, cluster, served_app
):
    """The failover that loses writes, made certain: the org's hashes on the promoted replica
    are labelled behind SQL, and no answer is taken from them; the reads recount and heal."""
    app, config, base = served_app
    org_id, owner, member = seed_accounts(config)
    projects = seed_projects(base, owner, member)
    oracle = Oracle(config["DATABASE_URL"], org_id)
    cells_key = CounterCache.keys(org_id)[0]
    path = FACETS_PATH.format(org="soak")

    def facets(caller, params=()):
        _, response = call(base, "GET", path, params=list(params), headers=caller.headers)
        assert response is not None and response.status_code == 200
        return int(response.headers[VERSION_HEADER]), response.json()

    def label() -> int | None:
        with app.app_context():
            value = state().redis.hget(cells_key, "v")
        return None if value is None else int(value)

    def create(caller, project) -> None:
        body = {"project_id": project}
        _, response = call(
            base, "POST", "/api/v1/org/soak/sandboxes", json=body, headers=caller.headers
        )
        assert response is not None and response.status_code == 201

    def acknowledged_writes():
        for project in (projects[0], None, projects[1]):
            create(owner, project)
        assert label() == oracle.version(), "the master applied every acknowledged write"

    try:
        facets(owner)  # warm: the hashes are installed at the current version
        before = label()
        assert before == oracle.version()
        cluster.fail_over_losing_writes(cells_key, acknowledged_writes)
        time.sleep(0.3)  # the client reads the slot map again after a fault at most this often
        lost = label()
        assert lost == before < oracle.version(), "the promoted replica lacks the writes"

        views = [(owner, ()), (member, ()), (owner, [("state", "running")])]
        views += [(owner, [("project_id", projects[0])]), (member, [("project_id", projects[0])])]
        for caller, params in views:
            version, body = facets(caller, params)
            states = tuple(v for k, v in params if k == "state")
            project_id = next((v for k, v in params if k == "project_id"), None)
            assert (version, body) == oracle.facets(caller, states, project_id)
        assert label() == oracle.version(), "a read installed the recount"

        create(member, None)
        assert facets(owner) == oracle.facets(owner, (), None)
    finally:
        oracle.dispose()
    result = app.test_cli_runner().invoke(args=["facets", "verify"])
    assert (result.exit_code, result.output) == (0, "cache agrees with SQL for 1 orgs\n")
    before = served()
    facets(owner)
    assert served() - before == {"warm": 1}
