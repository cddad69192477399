"""One org's writes in flight are bounded per process, so a busy org leaves threads to others."""

from __future__ import annotations

import os
import runpy
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import JWT_SECRET, ROOT, TEST_DATABASE_URL, TEST_REDIS_URL, World, gunicorn_running
from sqlalchemy import create_engine, text

from facets.edge.org_writes import OrgWriteGate
from facets.extensions import state

HOT, CALM = "hot", "calm"


def sandboxes_url(org: str) -> str:
    return f"/api/v1/org/{org}/sandboxes"


@pytest.fixture
def orgs(world):
    world.org(HOT)
    world.org(CALM)
    return world.caller(HOT, "owner"), world.caller(CALM, "owner")


def test_a_write_past_the_bound_is_429_and_other_orgs_write_on(app, client, orgs):
    hot, calm = orgs
    gate = app.extensions["facets_org_writes"]
    assert gate.limit == 1
    with gate.admit(HOT):  # one of hot's writes is in flight in this process
        refused = client.post(sandboxes_url(HOT), json={}, headers=hot.headers)
        assert refused.status_code == 429, refused.json
        assert refused.json["type"] == "usage_limit_exceeded_error"
        assert refused.headers["Retry-After"] == "1"
        assert "at most 1 at once" in refused.json["detail"]
        assert client.post(sandboxes_url(CALM), json={}, headers=calm.headers).status_code == 201
        assert client.get(sandboxes_url(HOT), headers=hot.headers).status_code == 200  # a read
    assert gate.in_flight(HOT) == 0
    assert client.post(sandboxes_url(HOT), json={}, headers=hot.headers).status_code == 201
    assert client.get(sandboxes_url(HOT), headers=hot.headers).json["sandboxes"] != []


def test_a_refused_or_failed_write_gives_its_place_back(app, client, orgs):
    hot, _ = orgs
    gate = app.extensions["facets_org_writes"]
    missing = f"{sandboxes_url(HOT)}/00000000-0000-0000-0000-000000000000"
    assert client.delete(missing, headers=hot.headers).status_code == 404
    assert client.post(sandboxes_url(HOT), json={"state": "x"}, headers=hot.headers).status_code
    assert gate.in_flight(HOT) == 0


def test_a_write_waiting_for_a_place_holds_no_database_connection(make_app):
    app = make_app(ORG_WRITE_WAIT_MS=30_000, RATE_LIMITS_ENABLED=False)
    world = World(app)
    world.org(HOT)
    hot = world.caller(HOT, "owner")
    gate = app.extensions["facets_org_writes"]
    with app.app_context():
        pool = state().db.engine.pool
    answers = []

    def write():
        answers.append(app.test_client().post(sandboxes_url(HOT), json={}, headers=hot.headers))

    with gate.admit(HOT):  # one of hot's writes is in flight in this process
        idle = pool.checkedout()
        waiting = [threading.Thread(target=write) for _ in range(3)]
        for thread in waiting:
            thread.start()
        for _ in range(3000):  # until all three wait at the gate
            if gate.queued() == 3:
                break
            time.sleep(0.01)
        assert gate.queued() == 3
        assert pool.checkedout() == idle, "a queued write took a connection"
    for thread in waiting:
        thread.join(60)
    assert [a.status_code for a in answers] == [201, 201, 201]


def test_a_waiting_write_gets_in_when_a_place_frees_within_its_wait():
    gate = OrgWriteGate(limit=1, wait_s=30)
    entered = threading.Event()
    release = threading.Event()

    def holder():
        with gate.admit("o"):
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    assert entered.wait(30)
    threading.Timer(0.05, release.set).start()
    with gate.admit("o"):  # waits for the holder, well within 30 s
        assert gate.in_flight("o") == 1
    thread.join(30)
    assert gate.in_flight("o") == 0


def test_the_bound_must_be_positive():
    with pytest.raises(RuntimeError, match="ORG_WRITES_IN_FLIGHT"):
        OrgWriteGate(limit=0, wait_s=0)


def _call(base: str, path: str, key: str, method: str, timeout: float) -> int:
    body = b"{}" if method == "POST" else None
    req = urllib.request.Request(
        base + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.leg("real")
@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_under_gunicorn_a_burst_on_one_org_leaves_another_orgs_reads_answered(
    app_config, app, orgs, tmp_path
):
    """One worker with two threads; the hot org's row is held locked, so its writers wait in
    PostgreSQL. Unbounded, two of them would take both threads and the calm org's read would
    wait for the lock (5 s, DB_LOCK_TIMEOUT_MS) with them; bounded, the rest are 429s at once
    and the read is answered while the lock is still held."""
    hot, calm = orgs
    env = {
        "DATABASE_URL": app_config["DATABASE_URL"],
        "REDIS_URL": TEST_REDIS_URL or "fakeredis://",
        "JWT_SECRET": JWT_SECRET,
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
        "ORG_WRITES_IN_FLIGHT": "1",
        "ORG_WRITE_WAIT_MS": "0",  # refused at once (the gevent workers' default queues 2 s)
        "DB_LOCK_TIMEOUT_MS": "20000",
        "RATE_LIMITS_ENABLED": "false",
    }
    locker = create_engine(app_config["DATABASE_URL"])
    statuses: list[int] = []
    with gunicorn_running(env, tmp_path / "gunicorn.log") as base:
        assert _call(base, sandboxes_url(CALM) + "/facets", calm.key, "GET", 10) == 200
        with locker.connect() as conn:
            conn.execute(text("SELECT 1 FROM orgs WHERE slug = :s FOR UPDATE"), {"s": HOT})

            def writer():
                statuses.append(_call(base, sandboxes_url(HOT), hot.key, "POST", 30))

            writers = [threading.Thread(target=writer) for _ in range(6)]
            for thread in writers:
                thread.start()
            deadline = time.monotonic() + 20
            while len(statuses) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)  # all but the admitted one are refused at once
            read = _call(base, sandboxes_url(CALM) + "/facets", calm.key, "GET", 3)
            assert read == 200
            conn.rollback()  # the admitted writer gets the lock and commits
        for thread in writers:
            thread.join(30)
    locker.dispose()
    assert sorted(statuses) == [201] + [429] * 5, statuses


@pytest.mark.parametrize(("worker_class", "wait_ms"), [("gevent", "2000"), ("gthread", None)])
def test_gevent_workers_queue_a_write_for_its_place_and_gthread_ones_refuse_it(
    monkeypatch, tmp_path, worker_class, wait_ms
):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the config sets it else
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", worker_class)
    monkeypatch.delenv("ORG_WRITE_WAIT_MS", raising=False)
    runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert os.environ.get("ORG_WRITE_WAIT_MS") == wait_ms
