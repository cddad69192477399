"""A PostgreSQL restart under traffic: once the database is back, no request fails.

A private PostgreSQL (``initdb`` + ``pg_ctl`` as the ``postgres`` user, on a free loopback
port) and a private ``redis-server`` serve gunicorn with three workers, while clients read
the facets, list sandboxes and projects, create sandboxes and change their state. Then
``pg_ctl restart`` (fast shutdown, which ends every pooled connection) returns once the
server accepts connections again: once under traffic, once while every pool sits idle.
Every request sent after that must be answered without a 5xx, ``/readyz`` must say 200
within a second, and every acknowledged write must be in the database. Requests in flight
during a restart may fail (the database was down).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from conftest import JWT_SECRET, free_port, require_installed
from sqlalchemy import create_engine, text

from facets import create_app
from facets.extensions import state
from models import Role, migrate
from models.services import accounts

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from soak.servers import Gunicorn, PrivateRedis  # noqa: E402

WARM_S = 3.0
AFTER_S = 5.0
CLIENTS = 4
READY_WITHIN_S = 1.0
POSTGRES_BIN_DIRS = ["/usr/local/bin", *sorted(Path("/usr/lib/postgresql").glob("*/bin"))]


def postgres_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in POSTGRES_BIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of our own in a temporary directory, on a free loopback port.

    As root, ``initdb`` and ``pg_ctl`` run as the ``postgres`` user (PostgreSQL refuses to run
    as root), so the directory is given to that user; otherwise as the current user.
    """

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = postgres_program("initdb"), postgres_program("pg_ctl")
        self.base = Path(tempfile.mkdtemp(prefix="facets-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            self.base.chmod(0o755)
            shutil.chown(self.base, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # No pipes: a server started by pg_ctl would hold them open.
        subprocess.run(
            [*self.as_user, *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self) -> None:
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} -c fsync=off"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )

    def restart(self) -> None:
        """Stop (fast: every session is ended) and start again; returns once it accepts
        connections."""
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "restart"
        )

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Outcome:
    op: str
    started: float
    status: int  # 0: no HTTP answer at all


@dataclass
class Client:
    """One caller's loop; it owns the sandboxes it creates, so its own order is theirs."""

    base: str
    headers: dict[str, str]
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    # sandbox -> (state last acknowledged, whether a later change of it went unanswered)
    states: dict[str, tuple[str, bool]] = field(default_factory=dict)

    def run(self, stop: threading.Event, paused: threading.Event) -> None:
        rng = random.Random(self.seed)
        session = requests.Session()
        session.headers.update(self.headers)
        org = f"{self.base}/api/v1/org/acme"
        while not stop.is_set():
            if paused.is_set():
                time.sleep(0.01)
                continue
            op = rng.choice(["facets", "facets", "list", "projects", "create", "patch"])
            started = time.monotonic()
            target = rng.choice(sorted(self.created)) if self.created else None
            new_state = rng.choice(["running", "paused"])
            try:
                if op == "facets":
                    response = session.get(f"{org}/sandboxes/facets", timeout=10)
                elif op == "list":
                    response = session.get(f"{org}/sandboxes?limit=5", timeout=10)
                elif op == "projects":
                    response = session.get(f"{org}/projects", timeout=10)
                elif op == "create" or target is None:
                    op = "create"
                    response = session.post(f"{org}/sandboxes", json={}, timeout=10)
                    if response.status_code == 201:
                        self.created.add(response.json()["id"])
                        self.states[response.json()["id"]] = ("running", False)
                else:
                    response = session.patch(
                        f"{org}/sandboxes/{target}", json={"state": new_state}, timeout=10
                    )
                    if response.status_code == 200:
                        self.states[target] = (new_state, False)
                    else:
                        self.states[target] = (self.states[target][0], True)
                status = response.status_code
            except requests.RequestException:
                status = 0
                if op == "patch" and target is not None:
                    self.states[target] = (self.states[target][0], True)
            self.outcomes.append(Outcome(op, started, status))


def seed(database_url: str, redis_url: str) -> str:
    """acme with an owner; returns the owner's API key."""
    migrate.upgrade(database_url)
    app = create_app(
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "JWT_SECRET": JWT_SECRET}
    )
    with app.app_context():
        with state().unit_of_work() as uow:
            accounts.create_org(uow, slug="acme")
            accounts.create_user(uow, email="owner@example.com")
            accounts.add_member(uow, org_slug="acme", email="owner@example.com", role=Role.OWNER)
            key = accounts.create_api_key(uow, email="owner@example.com").key
        state().db.dispose()
    return key


def poll_ready(
    base: str, stop: threading.Event, paused: threading.Event, seen: list[tuple[float, int]]
) -> None:
    while not stop.is_set():
        if paused.is_set():
            time.sleep(0.01)
            continue
        started = time.monotonic()
        try:
            status = requests.get(f"{base}/readyz", timeout=5).status_code
        except requests.RequestException:
            status = 0
        seen.append((started, status))
        time.sleep(0.05)


def test_no_request_fails_once_a_restarted_database_accepts_connections(tmp_path):
    postgres = PrivatePostgres()
    missing = [n for n, p in (("initdb", postgres.initdb), ("pg_ctl", postgres.pg_ctl)) if not p]
    missing += [] if shutil.which("redis-server") else ["redis-server"]
    require_installed(missing, "install them with: apt-get install -y postgresql redis-server")
    redis_server = PrivateRedis(tmp_path / "redis")
    gunicorn = None
    try:
        postgres.start()
        redis_server.start()
        key = seed(postgres.url, redis_server.url)
        env = {
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis_server.url,
            "JWT_SECRET": JWT_SECRET,
            "RATE_LIMITS_ENABLED": "false",
            "GUNICORN_THREADS": "2",
            "LOG_LEVEL": "WARNING",
        }
        gunicorn = Gunicorn(env, tmp_path / "gunicorn.log", workers=3)
        gunicorn.start()
        headers = {"Authorization": f"Bearer {key}"}
        clients = [Client(gunicorn.base_url, headers, seed=n) for n in range(CLIENTS)]
        stop, paused = threading.Event(), threading.Event()
        ready: list[tuple[float, int]] = []
        threads = [threading.Thread(target=c.run, args=(stop, paused)) for c in clients]
        threads.append(
            threading.Thread(target=poll_ready, args=(gunicorn.base_url, stop, paused, ready))
        )
        for thread in threads:
            thread.start()
        # Two restarts: one under traffic (the requests meet the outage), one while every
        # pool sits idle (none of its dead connections has been tried when traffic resumes).
        windows = []
        try:
            time.sleep(WARM_S)
            postgres.restart()
            windows.append((time.monotonic(), time.monotonic() + AFTER_S))
            time.sleep(AFTER_S)
            paused.set()
            time.sleep(0.5)  # the requests in flight finish
            postgres.restart()
            paused.clear()
            windows.append((time.monotonic(), time.monotonic() + AFTER_S))
            time.sleep(AFTER_S)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)

        outcomes = [o for c in clients for o in c.outcomes]
        assert all(o.status < 500 for o in outcomes if o.started < windows[0][0] - 5)
        for back, end in windows:
            after = [o for o in outcomes if back <= o.started < end]
            failed = [
                (o.op, o.status, round(o.started - back, 2)) for o in after if o.status >= 500
            ]
            assert failed == [], f"{len(failed)} of {len(after)} after a restart: {failed[:10]}"
            assert all(o.status != 0 for o in after)
            assert {o.op for o in after} == {"facets", "list", "projects", "create", "patch"}
            late_ready = [s for t, s in ready if back + READY_WITHIN_S <= t < end]
            assert late_ready and set(late_ready) == {200}, ready

        engine = create_engine(postgres.url)
        try:
            with engine.connect() as conn:
                stored = dict(conn.execute(text("SELECT id::text, state FROM sandboxes")).all())
        finally:
            engine.dispose()
        for client in clients:
            assert client.created <= set(stored)
            for sandbox, (acked, unanswered_since) in client.states.items():
                if not unanswered_since:
                    assert stored[sandbox] == acked, sandbox
        facets = requests.get(
            f"{gunicorn.base_url}/api/v1/org/acme/sandboxes/facets", headers=headers, timeout=10
        ).json()
        counted = {s: list(stored.values()).count(s) for s in set(stored.values())}
        assert {e["value"]: e["count"] for e in facets["states"]} == counted
    finally:
        if gunicorn is not None:
            gunicorn.stop()
        redis_server.stop()
        postgres.stop()
