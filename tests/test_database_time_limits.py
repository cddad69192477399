"""PostgreSQL waits are bounded: to connect, for a lock, and on a per-request read.

A request held up by a lock answers 504 ``gateway_timeout_error`` after
``DB_LOCK_TIMEOUT_MS`` (or ``DB_STATEMENT_TIMEOUT_MS`` for its reads); a server that accepts
connections and never answers is a ``database_error`` after ``DB_CONNECT_TIMEOUT_S``. A long
write and an admin recount are not limited, and settings given in the URL are kept.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import JWT_SECRET, World, assert_gateway_timeout, make_jwt
from sqlalchemy import create_engine, text

from facets import create_app
from facets.extensions import state

FACETS = "/api/v1/org/acme/sandboxes/facets"
LIMIT_MS = 300

pytestmark = pytest.mark.leg("real")  # SQLite has neither a server to wait on nor row locks


@pytest.fixture
def limited(app_config):
    """The app with 300 ms limits, the org ``acme`` with a sandbox, and its owner (read
    once, so its facets are warm)."""
    limits = {"DB_STATEMENT_TIMEOUT_MS": LIMIT_MS, "DB_LOCK_TIMEOUT_MS": LIMIT_MS}
    app = create_app({**app_config, **limits})
    world = World(app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    sandbox_id = world.sandboxes("acme")[0]
    client = app.test_client()
    assert client.get(FACETS, headers=owner.headers).status_code == 200
    yield app, client, owner, sandbox_id
    with app.app_context():
        state().db.dispose()


@pytest.fixture
def locker(limited):
    """Another session of the same database, to hold locks with."""
    engine = create_engine(limited[0].config["DATABASE_URL"])
    yield engine
    engine.dispose()


def assert_time_limit(response) -> None:
    assert_gateway_timeout(response)
    assert "did not answer in time" in response.json["detail"]


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.mark.parametrize("table", ["orgs", "api_keys", "memberships"])
def test_a_read_held_up_by_a_lock_is_a_504_after_the_limit(limited, locker, table):
    _, client, owner, _ = limited
    with locker.begin() as conn:
        conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        response, took = timed(lambda: client.get(FACETS, headers=owner.headers))
        assert_time_limit(response)
    assert took < 5, took  # the limit, not the lock, ended it (the lock was held throughout)
    assert client.get(FACETS, headers=owner.headers).status_code == 200


def test_a_read_by_jwt_held_up_by_a_lock_is_a_504(limited, locker):
    _, client, owner, _ = limited
    token = {"Authorization": f"Bearer {make_jwt(owner.user_id, secret=JWT_SECRET)}"}
    with locker.begin() as conn:
        conn.execute(text("LOCK TABLE memberships IN ACCESS EXCLUSIVE MODE"))
        assert_time_limit(client.get(FACETS, headers=token))


def test_a_write_waiting_for_the_org_lock_is_a_504_after_the_limit(limited, locker):
    _, client, owner, sandbox_id = limited
    with locker.begin() as conn:
        conn.execute(text("SELECT 1 FROM orgs WHERE slug = 'acme' FOR UPDATE"))
        response = client.patch(
            f"/api/v1/org/acme/sandboxes/{sandbox_id}",
            json={"state": "paused"},
            headers=owner.headers,
        )
        assert_time_limit(response)
    response = client.patch(
        f"/api/v1/org/acme/sandboxes/{sandbox_id}", json={"state": "paused"}, headers=owner.headers
    )
    assert response.status_code == 200


@pytest.mark.parametrize("command", ["rebuild", "verify"])
@pytest.mark.parametrize("table", ["sandboxes", "orgs"])
def test_an_admin_recount_waits_for_a_lock_past_the_limit(limited, locker, command, table):
    app = limited[0]
    with locker.connect() as conn:
        transaction = conn.begin()
        conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        release = threading.Timer(3 * LIMIT_MS / 1000, transaction.rollback)
        release.start()
        result, took = timed(
            lambda: app.test_cli_runner().invoke(args=["facets", command, "--org", "acme"])
        )
        release.join()
    assert result.exit_code == 0, result.output
    assert took >= 3 * LIMIT_MS / 1000 * 0.9  # it waited for the lock, past the limit


def test_a_long_write_is_not_cut_by_the_read_limit(app_config):
    """Deleting a big project moves its sandboxes in one UPDATE: no statement limit there."""
    app = create_app({**app_config, "DB_STATEMENT_TIMEOUT_MS": 1})
    world = World(app)
    world.org("acme")
    big = world.project("acme", "big")
    with app.app_context(), state().db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sandboxes (id, org_id, project_id, state, created_at, updated_at) "
                "SELECT gen_random_uuid(), org_id, id, 'running', now(), now() "
                "FROM projects, generate_series(1, 50000) WHERE projects.id = :big"
            ),
            {"big": big},
        )
    owner = world.caller("acme", "owner")
    token = {"Authorization": f"Bearer {make_jwt(owner.user_id)}"}  # no per-request read
    response = app.test_client().delete(f"/api/v1/org/acme/projects/{big}", headers=token)
    assert response.status_code == 204, response.get_data(as_text=True)
    with app.app_context():
        state().db.dispose()


def test_settings_in_the_url_are_kept_beside_the_limits(app_config):
    url = app_config["DATABASE_URL"]
    url += ("&" if "?" in url else "?") + "options=-c%20application_name%3Dfacets-test"
    app = create_app({**app_config, "DATABASE_URL": url, "DB_LOCK_TIMEOUT_MS": LIMIT_MS})
    with app.app_context():
        db = state().db
        for engine in (db.engine, db.autocommit_engine):
            with engine.connect() as conn:
                assert conn.scalar(text("SHOW application_name")) == "facets-test"
                assert conn.scalar(text("SHOW lock_timeout")) == f"{LIMIT_MS}ms"
        with db.autocommit_engine.connect() as conn:
            assert conn.scalar(text("SHOW statement_timeout")) == "5s"
        with db.engine.connect() as conn:
            assert conn.scalar(text("SHOW statement_timeout")) == "0"
        db.dispose()


def test_a_dropped_connection_is_retried_not_answered_with_an_error(make_app):
    """A database restart drops pooled connections: the rate limiter's credential check
    meets the dropped one, and the view's own check reconnects (rate limits on)."""
    app = make_app(RATE_LIMITS_ENABLED=True)
    world = World(app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    client = app.test_client()
    assert client.get(FACETS, headers=owner.headers).status_code == 200
    with app.app_context(), state().db.engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    assert client.get(FACETS, headers=owner.headers).status_code == 200


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_a_server_that_never_answers_is_a_database_error_after_the_connect_limit(
    app_config, silent_server
):
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/nowhere"
    app = create_app({**app_config, "DATABASE_URL": url, "DB_CONNECT_TIMEOUT_S": 2})
    client = app.test_client()
    ready, took = timed(lambda: client.get("/readyz"))
    assert ready.status_code == 503
    assert took < 10, took  # libpq's own default would wait over two minutes
    token = {"Authorization": f"Bearer {make_jwt('00000000-0000-0000-0000-000000000001')}"}
    response, took = timed(lambda: client.get(FACETS, headers=token))
    assert response.status_code == 500
    assert response.json["type"] == "database_error"
    assert took < 10, took
