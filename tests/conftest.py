"""Fixtures: the app on each test leg, its client and CLI runner, and a ``world`` builder.

Legs: ``fast`` (a SQLite file copied from a migrated template + in-process fakeredis) always;
``real`` (``TEST_DATABASE_URL`` PostgreSQL + ``TEST_REDIS_URL`` Redis) when those are set. A
real leg whose server is unreachable errors; it never skips.

``cluster`` (PostgreSQL + a Redis Cluster) runs the tests marked ``cluster`` (the cache
suites) when ``TEST_DATABASE_URL`` is set and either ``TEST_REDIS_CLUSTER_URL`` names a
cluster (``redis+cluster://host:port,...``) or ``CI=true``, when the session starts its own
3-master, 3-replica cluster on loopback (``soak.cluster.LocalCluster``). A ``leg("real")``
test marked ``cluster`` runs on both real-server legs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import jwt
import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import create_engine, event, text

from facets import create_app
from facets.extensions import state
from facets.ops.metrics import FACETS_SERVED
from facets.redis_cluster import LazyCluster
from models import Access, Base, Database, Role, migrate
from models.prepared import PreparedRead
from models.services import accounts, projects, sandboxes

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
ROOT = Path(__file__).resolve().parent.parent
TEST_REDIS_CLUSTER_URL = os.environ.get("TEST_REDIS_CLUSTER_URL")
LEGS = ["fast"] + (["real"] if TEST_DATABASE_URL else [])
CLUSTER_LEG = bool(TEST_DATABASE_URL and (TEST_REDIS_CLUSTER_URL or os.environ.get("CI") == "true"))


def pytest_configure(config):
    config.addinivalue_line("markers", "leg(name): run the test on that leg only (fast or real)")
    config.addinivalue_line("markers", "cluster: run the test on the cluster leg too")


def _leg_applies(item, leg: str | None) -> bool:
    """Whether ``item`` runs on ``leg``: its ``leg`` marker names it (``real`` stands for both
    real-server legs), and only tests marked ``cluster`` run on the cluster leg."""
    if leg is None:
        return True
    if leg == "cluster" and item.get_closest_marker("cluster") is None:
        return False
    marker = item.get_closest_marker("leg")
    return marker is None or leg in marker.args or (leg == "cluster" and "real" in marker.args)


def pytest_collection_modifyitems(config, items):
    """Deselect leg-specific tests on the other leg (they do not apply there: not a skip)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        leg = callspec.params.get("leg") if callspec else None
        (keep if _leg_applies(item, leg) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    """A migrated SQLite file that each fast-leg test copies."""
    path = tmp_path_factory.mktemp("template") / "facets.sqlite3"
    migrate.upgrade(f"sqlite:///{path}")
    return str(path)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real leg's PostgreSQL, emptied and migrated once per session."""
    assert TEST_DATABASE_URL, "TEST_DATABASE_URL is not set"
    from facets.config import normalize_database_url

    url = normalize_database_url(TEST_DATABASE_URL)
    engine = create_engine(url)
    with engine.begin() as conn:  # fails loudly when the server is unreachable
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    migrate.upgrade(url)
    return url


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()


@pytest.fixture(autouse=True)
def dispose_every_database(monkeypatch):
    """Close the connection pools (and stop the watch listeners) of every app a test builds,
    however it built it.

    A pool left to the garbage collector makes psycopg warn at an arbitrary later moment,
    which ``filterwarnings = error`` turns into a failure of whichever test is running.
    """
    from facets import extensions

    opened: list[Database] = []

    class TrackedDatabase(Database):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    class TrackedWatchers(extensions.Watchers):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            listening.append(self)

    listening: list[extensions.Watchers] = []
    monkeypatch.setattr(extensions, "Database", TrackedDatabase)
    monkeypatch.setattr(extensions, "Watchers", TrackedWatchers)
    yield
    for watchers in listening:  # first: a listener may still read the database
        watchers.close()
    for db in opened:
        db.dispose()


@pytest.fixture(params=[*LEGS, "cluster"] if CLUSTER_LEG else LEGS)
def leg(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory) -> Iterator[str]:
    """The cluster leg's Redis Cluster: ``TEST_REDIS_CLUSTER_URL``, else one of our own."""
    if TEST_REDIS_CLUSTER_URL:
        yield TEST_REDIS_CLUSTER_URL
        return
    require_installed(
        [p for p in ("redis-server", "redis-cli") if not shutil.which(p)],
        "install them with: apt-get install -y redis-server",
    )
    from soak.cluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def flush_cluster(url: str) -> None:
    """Empty every master of the cluster at ``url`` (errors if it is unreachable)."""
    from facets.extensions import make_redis

    client = make_redis(url)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.fixture
def app_config(leg, request, tmp_path) -> dict:
    """The config of the app under test on this leg."""
    config = {"TESTING": True, "JWT_SECRET": JWT_SECRET, "LOG_LEVEL": "WARNING"}
    if leg == "fast":
        db_path = tmp_path / "facets.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), db_path)
        config.update(DATABASE_URL=f"sqlite:///{db_path}", REDIS_URL="fakeredis://")
    elif leg == "cluster":
        url = request.getfixturevalue("postgres_url")
        _truncate_postgres(url)
        cluster_url = request.getfixturevalue("redis_cluster_url")
        flush_cluster(cluster_url)
        config.update(DATABASE_URL=url, REDIS_URL=cluster_url)
    else:
        url = request.getfixturevalue("postgres_url")
        _truncate_postgres(url)
        config.update(DATABASE_URL=url, REDIS_URL=TEST_REDIS_URL or "fakeredis://")
        if TEST_REDIS_URL:
            redis_lib.Redis.from_url(TEST_REDIS_URL).flushdb()  # errors if unreachable
    return config


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    with app.app_context():
        state().db.dispose()


def require_installed(missing: list[str], how: str) -> None:
    """Skip a test whose programs are not installed here (a developer's machine), or fail it
    under ``CI=true``, where everything must run."""
    if not missing:
        return
    message = f"{', '.join(missing)} not found; {how}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def real_servers() -> tuple[str, str]:
    """The real leg's PostgreSQL server URL and Redis URL, for the benches' smoke runs (which
    create their own databases there and flush that Redis db)."""
    server, redis_url = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    require_installed(
        [] if server and redis_url else ["TEST_DATABASE_URL/TEST_REDIS_URL"],
        "the bench's smoke run needs the real leg's PostgreSQL and Redis",
    )
    return server, redis_url


def require_redis_server() -> None:
    """The fault and concurrency tests start private ``redis-server`` processes."""
    missing = [] if shutil.which("redis-server") else ["redis-server"]
    require_installed(missing, "install it with: apt-get install -y redis-server")


@pytest.fixture
def redis_server(tmp_path):
    """A private ``redis-server`` of the test's own, stopped afterwards."""
    from soak.servers import PrivateRedis

    require_redis_server()
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_app(app_config):
    """``make_app(**overrides)``: another app of this leg with some settings changed."""
    return lambda **overrides: create_app({**app_config, **overrides})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@dataclass(frozen=True)
class Caller:
    """A user with an API key, ready to call the API."""

    user_id: uuid.UUID
    email: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class World:
    """Builds orgs, users, projects and sandboxes through the service layer."""

    def __init__(self, app) -> None:
        self.app = app
        self._n = 0

    def _uow(self):
        return state().unit_of_work()

    def _admin_access(self, uow, org_slug: str) -> Access:
        org = accounts.get_org(uow, slug=org_slug)
        version = uow.lock_org(org.id)
        return Access(org.id, org.slug, uuid.UUID(int=0), Role.OWNER, version, None)

    def org(self, slug: str, name: str | None = None) -> uuid.UUID:
        with self.app.app_context(), self._uow() as uow:
            return accounts.create_org(uow, slug=slug, name=name).id

    def caller(self, org: str | None = None, role: str = "owner", projects_=()) -> Caller:
        """A new user (member of ``org`` with ``role`` and project memberships) and a key."""
        self._n += 1
        email = f"user{self._n}-{uuid.uuid4().hex[:6]}@example.com"
        with self.app.app_context():
            with self._uow() as uow:
                user = accounts.create_user(uow, email=email)
                if org is not None:
                    accounts.add_member(uow, org_slug=org, email=email, role=Role(role))
            for project_id in projects_:
                self.add_project_member(org, project_id, email)
            with self._uow() as uow:
                key = accounts.create_api_key(uow, email=email).key
        return Caller(user.id, email, key)

    def project(self, org: str, key: str, name: str | None = None) -> uuid.UUID:
        with self.app.app_context(), self._uow() as uow:
            access = self._admin_access(uow, org)
            return projects.create_project(uow, access=access, key=key, name=name or key).id

    def add_project_member(self, org: str, project_id: uuid.UUID, email: str) -> None:
        with self.app.app_context(), self._uow() as uow:
            access = self._admin_access(uow, org)
            projects.add_project_member(uow, access=access, project_id=project_id, email=email)

    def sandboxes(
        self, org: str, project_id: uuid.UUID | None = None, state_: str = "running", n: int = 1
    ) -> list[uuid.UUID]:
        """``n`` sandboxes in one state (killed ones are created running, then killed)."""
        with self.app.app_context(), self._uow() as uow:
            access = self._admin_access(uow, org)
            ids = []
            for _ in range(n):
                sandbox = sandboxes.create_sandbox(
                    uow,
                    access=access,
                    project_id=project_id,
                    state="running" if state_ == "killed" else state_,
                )
                if state_ == "killed":
                    sandboxes.update_sandbox(
                        uow, access=access, sandbox_id=sandbox.id, state="killed"
                    )
                ids.append(sandbox.id)
            return ids


@pytest.fixture
def world(app) -> World:
    return World(app)


def make_jwt(sub, *, secret: str = JWT_SECRET, expires_in: int = 300, **claims) -> str:
    """An HS256 JWT for ``sub`` issued now; negative ``expires_in`` gives an expired one."""
    now = datetime.now(UTC)
    payload = {"sub": str(sub), "iat": now, "exp": now + timedelta(seconds=expires_in)}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


class redis_down:
    """While active, every command of the app's Redis client fails to connect."""

    def __init__(self, app) -> None:
        with app.app_context():
            self.client = state().redis

    def __enter__(self):
        if isinstance(self.client, LazyCluster):
            # No node reachable: the cluster client's own "unreachable" state, held.
            self.cluster, self.client._client = self.client._client, None
            self.client._next_try = float("inf")
            return self
        self.pool = self.client.connection_pool
        self.client.connection_pool = redis_lib.ConnectionPool(
            host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        return self

    def __exit__(self, *exc) -> None:
        if isinstance(self.client, LazyCluster):
            self.client._client, self.client._next_try = self.cluster, 0.0
            return
        self.client.connection_pool.disconnect()
        self.client.connection_pool = self.pool


@contextlib.contextmanager
def statements(app):
    """Collect the SQL statements (not BEGIN and the like) the app runs meanwhile.

    Core executions are seen by a listener on each of the app's engines; ``PreparedRead``
    runs on the driver connection, below SQLAlchemy's events, so its executions are recorded
    where they start.
    """
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.split()[0].upper() not in {"BEGIN", "COMMIT", "ROLLBACK"}:
            seen.append(statement)

    prepared_rows = PreparedRead.rows

    def rows(self, engine, **params):
        seen.append(str(self.statement.compile(dialect=engine.dialect)))
        return prepared_rows(self, engine, **params)

    with app.app_context():
        db = state().db
    engines = {id(e): e for e in (db.engine, db.autocommit_engine)}.values()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        with mock.patch.object(PreparedRead, "rows", rows):
            yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


@contextlib.contextmanager
def after_commit_hooks_off(app):
    """Commits meanwhile reach no after-commit hook, as if the process died right after each:
    their cache updates are lost."""
    with app.app_context():
        hooks = state().hooks.hooks
    saved = list(hooks)
    hooks.clear()
    try:
        yield
    finally:
        hooks[:] = saved


def _totals(counter) -> list:
    """The ``_total`` samples of a labelled counter, one per label set seen so far."""
    (family,) = counter.collect()
    return [s for s in family.samples if s.name.endswith("_total")]


def counted(counter, **labels: str) -> float:
    """A labelled counter's value so far for ``labels`` (process-wide; 0 before its first)."""
    return next((s.value for s in _totals(counter) if s.labels == labels), 0.0)


def served() -> Counter[str]:
    """How many facets responses each path has answered so far (process-wide)."""
    return Counter({s.labels["path"]: int(s.value) for s in _totals(FACETS_SERVED)})


def aggregates(seen: list[str]) -> list[str]:
    """The recount statements among ``seen`` (as collected by ``statements``)."""
    return [s for s in seen if "count(" in s.lower() or "group by" in s.lower()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn_running(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """gunicorn from the project's gunicorn.conf.py on a free port, with ``env`` over this
    process's environment; yields its base URL once ``/healthz`` answers, stops it after."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        **env,
    }
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)


def raw_exchange(base: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` (a whole HTTP request, framing included) to the server at ``base``, end the
    sending side, and read until it closes: status, headers (lower-cased names), body."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_gateway_timeout(response) -> None:
    """A 504 ``gateway_timeout_error`` envelope that says when to retry."""
    assert response.status_code == 504, response.get_data(as_text=True)
    assert response.json["type"] == "gateway_timeout_error"
    assert response.json["code"] == 504
    assert response.headers["Retry-After"] == "1"
