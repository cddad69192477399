"""``PreparedRead``: the hot path's statements on the driver connection answer as Core would."""

from __future__ import annotations

import select
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import statements
from sqlalchemy import text

from facets.extensions import state
from models import session as session_module
from models.access import ACCESS_STATEMENT, KEY_ACCESS_STATEMENT
from models.prepared import PreparedRead
from models.services import accounts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def people(world):
    """acme with two projects; an owner, a member of both, an outsider; keys of every kind."""
    world.org("acme")
    web, api = world.project("acme", "web"), world.project("acme", "api")
    world.org("globex")
    owner = world.caller("acme", "owner")
    member = world.caller("acme", "member", projects_=[web, api])
    outsider = world.caller("globex", "owner")
    with world.app.app_context(), state().unit_of_work() as uow:
        expiring = accounts.create_api_key(
            uow, email=member.email, expires_in=timedelta(hours=1)
        ).key
    with world.app.app_context(), state().unit_of_work() as uow:
        accounts.revoke_api_key(uow, prefix=owner.key[: accounts.API_KEY_PREFIX_LEN])
    return {"owner": owner, "member": member, "outsider": outsider, "expiring": expiring}


def both_ways(app, statement, **params) -> tuple[list[tuple], list[tuple]]:
    """The rows of ``statement`` from Core and from a ``PreparedRead``, in one order."""
    with app.app_context():
        db = state().db
        with db.read_connection() as conn:
            core = [tuple(row) for row in conn.execute(statement, params)]
        prepared = [tuple(row) for row in db.read_rows(PreparedRead(statement), **params)]
    return sorted(core, key=repr), sorted(prepared, key=repr)


@pytest.mark.parametrize("who", ["owner", "member", "outsider"])
@pytest.mark.parametrize("org", ["acme", "globex", "no-such-org"])
def test_access_rows_equal_cores_values_and_types(app, people, who, org):
    core, prepared = both_ways(app, ACCESS_STATEMENT, user_id=people[who].user_id, org_slug=org)
    assert prepared == core
    assert [[type(v) for v in row] for row in prepared] == [[type(v) for v in row] for row in core]


@pytest.mark.parametrize("key", ["owner", "member", "outsider", "expiring", "unknown"])
@pytest.mark.parametrize("org", ["acme", "no-such-org"])
def test_key_access_rows_equal_cores_values_and_types(app, people, key, org):
    secret = "sk_" + "0" * 40 if key == "unknown" else getattr(people[key], "key", people[key])
    prefix = secret[: accounts.API_KEY_PREFIX_LEN]
    core, prepared = both_ways(app, KEY_ACCESS_STATEMENT, prefix=prefix, org_slug=org)
    assert prepared == core
    assert [[type(v) for v in row] for row in prepared] == [[type(v) for v in row] for row in core]
    if key != "unknown":
        assert core, "a known key gives rows"
    if key in ("owner", "expiring"):  # revoked_at / expires_at come back as datetimes
        assert any(v is not None and hasattr(v, "tzinfo") for v in core[0][2:4])


def test_rows_are_named_by_the_statements_column_keys(app, people):
    with app.app_context():
        (row, *_) = state().db.read_rows(
            PreparedRead(ACCESS_STATEMENT), user_id=people["member"].user_id, org_slug="acme"
        )
    assert row._fields == (
        "id",
        "facet_version",
        "labels_version",
        "role",
        "sessions_revoked_at",
        "project_id",
    )
    assert isinstance(row.id, uuid.UUID) and row.role == "member"


@pytest.fixture
def ended_pool(app, people):
    """Three pooled autocommit connections whose server sessions have all been ended (and
    exited: the server's goodbye is on their sockets); yields the db, a read and its params."""
    read = PreparedRead(ACCESS_STATEMENT)
    params = {"user_id": people["member"].user_id, "org_slug": "acme"}
    with app.app_context():
        db = state().db
        pooled = [db.autocommit_engine.raw_connection() for _ in range(3)]
        for raw in pooled:
            raw.close()
        others = text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with db.engine.connect() as admin:
            admin.execute(others)
            for _ in range(100):  # until the ended backends are gone
                if not admin.execute(others).scalar():
                    break
                time.sleep(0.05)
            admin.commit()
        yield db, read, params


@pytest.mark.leg("real")
def test_connections_the_server_ended_are_replaced_before_use(app, ended_pool):
    """The server ends every pooled session: the next reads find out at checkout, without a
    round trip, and go to fresh connections; none fails."""
    db, read, params = ended_pool
    with statements(app) as seen:
        for _ in range(3):
            assert db.read_rows(read, **params)
    assert len(seen) == 3  # no ping, no retry: one statement per read


@pytest.mark.leg("real")
def test_a_read_that_loses_its_connection_is_sent_once_more(app, ended_pool, monkeypatch):
    """A connection that dies unnoticed (the checkout saw nothing yet): the read fails as
    Core's disconnect error, the pool is replaced and the read is sent again; it answers."""
    db, read, params = ended_pool
    monkeypatch.setattr(session_module, "is_idle_and_open", lambda _conn, _poll: True)
    with statements(app) as seen:
        assert db.read_rows(read, **params)
        for _ in range(3):  # not one failure per pooled connection: the pool was replaced
            assert db.read_rows(read, **params)
    assert len(seen) == 5  # the first read was sent twice


def test_the_checkout_polls_with_the_os_poll_even_under_gevents_patching():
    """The gevent workers patch ``select.poll``; the checkout's zero-timeout poll never waits,
    so it keeps the OS's (the cooperative one costs watchers and a turn of the hub)."""
    probe = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import select\n"
        "from models.session import os_poll\n"
        "original = monkey.get_original('select', 'poll')\n"
        "assert select.poll is not original, 'gevent did not patch select.poll'\n"
        "assert os_poll() is original\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert session_module.os_poll() is select.poll  # not patched here
