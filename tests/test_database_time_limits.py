"""PostgreSQL waits are bounded: to connect, and on any statement, lock waits included.

A request held up by a lock answers 504 ``gateway_timeout_error`` after
``DB_STATEMENT_TIMEOUT_MS``; a server that accepts connections and never answers is a
``database_error`` after ``DB_CONNECT_TIMEOUT_S``; an admin recount is not limited.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import JWT_SECRET, World, make_jwt
from sqlalchemy import create_engine, text

from facets import create_app
from facets.extensions import state

FACETS = "/api/v1/org/acme/sandboxes/facets"
LIMIT_MS = 300

pytestmark = pytest.mark.leg("real")  # SQLite has neither a server to wait on nor row locks


@pytest.fixture
def limited(app_config):
    """The app with a 300 ms statement limit, the org ``acme`` with a sandbox, and its owner
    (read once, so its facets are warm)."""
    app = create_app({**app_config, "DB_STATEMENT_TIMEOUT_MS": LIMIT_MS})
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


def assert_gateway_timeout(response) -> None:
    assert response.status_code == 504, response.get_data(as_text=True)
    assert response.json["type"] == "gateway_timeout_error"
    assert response.headers["Retry-After"] == "1"
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
        assert_gateway_timeout(response)
    assert took < 5, took  # the limit, not the lock, ended it (the lock was held throughout)
    assert client.get(FACETS, headers=owner.headers).status_code == 200


def test_a_read_by_jwt_held_up_by_a_lock_is_a_504(limited, locker):
    _, client, owner, _ = limited
    token = {"Authorization": f"Bearer {make_jwt(owner.user_id, secret=JWT_SECRET)}"}
    with locker.begin() as conn:
        conn.execute(text("LOCK TABLE memberships IN ACCESS EXCLUSIVE MODE"))
        assert_gateway_timeout(client.get(FACETS, headers=token))


def test_a_write_waiting_for_the_org_lock_is_a_504_after_the_limit(limited, locker):
    _, client, owner, sandbox_id = limited
    with locker.begin() as conn:
        conn.execute(text("SELECT 1 FROM orgs WHERE slug = 'acme' FOR UPDATE"))
        response = client.patch(
            f"/api/v1/org/acme/sandboxes/{sandbox_id}",
            json={"state": "paused"},
            headers=owner.headers,
        )
        assert_gateway_timeout(response)
    response = client.patch(
        f"/api/v1/org/acme/sandboxes/{sandbox_id}", json={"state": "paused"}, headers=owner.headers
    )
    assert response.status_code == 200


def test_an_admin_rebuild_waits_past_the_limit(limited, locker):
    app = limited[0]
    with locker.connect() as conn:
        transaction = conn.begin()
        conn.execute(text("LOCK TABLE sandboxes IN ACCESS EXCLUSIVE MODE"))
        release = threading.Timer(3 * LIMIT_MS / 1000, transaction.rollback)
        release.start()
        result, took = timed(
            lambda: app.test_cli_runner().invoke(args=["facets", "rebuild", "--org", "acme"])
        )
        release.join()
    assert result.exit_code == 0, result.output
    assert took >= 3 * LIMIT_MS / 1000 * 0.9  # it waited for the lock, past the limit


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
