"""A sandbox write holds its org's row lock for one statement and the commit, and what it
records is the newest committed state even when it waited for the lock.

Real leg only: SQLite has no row locks (``BEGIN IMMEDIATE`` serializes its writers).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import psycopg
import pytest
from conftest import TEST_DATABASE_URL
from sqlalchemy import Engine, event, text

from facets.extensions import state
from models import events
from models.access import check_access
from models.services import sandboxes
from models.services.common import lock_access

pytestmark = [
    pytest.mark.leg("real"),
    pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)"),
]

SANDBOXES = "/api/v1/org/acme/sandboxes"
WAIT_S = 30


@contextlib.contextmanager
def statements_under_lock(app):
    """The statements each transaction of the app's writer runs from the one that takes a row
    lock (``FOR UPDATE``) up to its commit; one list per committed transaction."""
    held: list[list[str]] = []
    current: list[str] | None = None

    def before(conn, cursor, statement, parameters, context, executemany):
        nonlocal current
        if current is None and "FOR UPDATE" in statement:
            current = []
        if current is not None:
            current.append(statement)

    def commit(conn):
        nonlocal current
        if current is not None:
            held.append(current)
        current = None

    def rollback(conn):
        nonlocal current
        current = None

    listeners = (("before_cursor_execute", before), ("commit", commit), ("rollback", rollback))
    with listening(app, listeners):
        yield held


@contextlib.contextmanager
def listening(app, listeners):
    """Core event listeners on both of the writer's engines (the unit of work's session and
    a one-statement unit of work's autocommit connection)."""
    with app.app_context():
        db = state().db
    engines = (db.engine, db.one_statement_engine)
    for engine in engines:
        for name, fn in listeners:
            event.listen(engine, name, fn)
    try:
        yield
    finally:
        for engine in engines:
            for name, fn in listeners:
                event.remove(engine, name, fn)


@pytest.fixture
def acme(world):
    world.org("acme")
    web = world.project("acme", "web")
    owner = world.caller("acme", "owner")
    member = world.caller("acme", "member", projects_=[web])
    return owner, member, web


@pytest.mark.parametrize("role", ["owner", "member"])
def test_create_patch_and_delete_each_hold_the_lock_for_one_statement(app, client, acme, role):
    owner, member, web = acme
    headers = (owner if role == "owner" else member).headers
    with statements_under_lock(app) as held:
        created = client.post(SANDBOXES, json={"project_id": str(web)}, headers=headers)
        assert created.status_code == 201, created.json
        path = f"{SANDBOXES}/{created.json['id']}"
        patched = client.patch(path, json={"state": "paused", "project_id": None}, headers=headers)
        assert patched.status_code == 200, patched.json
        assert client.delete(path, headers=headers).status_code == 204
    assert [len(statements) for statements in held] == [1, 1, 1], held


def test_a_refused_write_changes_nothing_and_holds_no_more(app, client, acme):
    owner, member, _ = acme
    (killed,) = sandboxes_of(app, owner, "killed")
    with statements_under_lock(app) as held:
        response = client.patch(
            f"{SANDBOXES}/{killed}", json={"state": "paused"}, headers=owner.headers
        )
    assert response.status_code == 409
    assert held == []  # rolled back, never committed


def sandboxes_of(app, caller, final_state: str) -> list[uuid.UUID]:
    """One sandbox created (and moved to ``final_state``) through the API as ``caller``."""
    client = app.test_client()
    created = client.post(SANDBOXES, json={}, headers=caller.headers).json
    if final_state != "running":
        client.patch(
            f"{SANDBOXES}/{created['id']}", json={"state": final_state}, headers=caller.headers
        )
    return [uuid.UUID(created["id"])]


def lock_waiters(app) -> int:
    """How many of this database's backends wait for a lock right now."""
    with app.app_context(), state().db.read_connection() as conn:
        return conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def test_a_write_that_waited_for_the_lock_records_what_the_holder_committed(app, client, acme):
    """The waiting statement's snapshot predates the holder's commit; its locking reads must
    still return the row as committed, or the event would count the old state twice."""
    owner, _, web = acme
    (sid,) = sandboxes_of(app, owner, "running")
    seen = []
    with app.app_context():
        state().hooks.register(lambda commits: seen.extend(e for c in commits for e in c.events))
    holder_changed, release = threading.Event(), threading.Event()

    def holder():
        with app.app_context(), state().unit_of_work() as uow:
            access = lock_access(uow, org_slug="acme", user_id=owner.user_id)
            sandboxes.update_sandbox(uow, access=access, sandbox_id=sid, state="paused")
            holder_changed.set()
            release.wait(WAIT_S)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holder_changed.wait(WAIT_S)
    waiter_result = {}

    def waiter():
        response = app.test_client().patch(
            f"{SANDBOXES}/{sid}",
            json={"state": "killed", "project_id": str(web)},
            headers=owner.headers,
        )
        waiter_result["status"] = response.status_code

    waiting = threading.Thread(target=waiter)
    waiting.start()
    deadline = time.monotonic() + WAIT_S
    while lock_waiters(app) == 0:
        assert time.monotonic() < deadline, "the second write never waited for the lock"
        time.sleep(0.01)
    release.set()
    thread.join(WAIT_S)
    waiting.join(WAIT_S)
    assert waiter_result == {"status": 200}
    org_id = seen[0].org_id
    assert seen[-3:] == [
        events.SandboxStateChanged(org_id, sid, None, "running", "paused"),
        events.SandboxStateChanged(org_id, sid, None, "paused", "killed"),
        events.SandboxMoved(org_id, sid, "killed", None, web),
    ]


@contextlib.contextmanager
def lock_free_after_each_write(app, org_id):
    """For each statement that takes the org's row lock: whether another connection could take
    that lock (``NOWAIT``) the moment the statement returned, before the writer sent anything
    else."""
    free: list[bool] = []
    other = psycopg.connect(TEST_DATABASE_URL, autocommit=True)

    def after(conn, cursor, statement, parameters, context, executemany):
        if "FOR UPDATE" not in statement:
            return
        try:
            with other.transaction():
                other.execute("SELECT 1 FROM orgs WHERE id = %s FOR UPDATE NOWAIT", (org_id,))
            free.append(True)
        except psycopg.errors.LockNotAvailable:
            free.append(False)

    try:
        with listening(app, (("after_cursor_execute", after),)):
            yield free
    finally:
        other.close()


def test_an_api_write_has_released_the_org_lock_when_its_statement_returns(app, client, acme):
    """The sandbox write commits as its statement ends (autocommit), so the lock is not held
    while the worker gets round to a COMMIT; a unit of work that goes on after the statement
    (here a test's own, as the admin tools open them) holds it until its commit."""
    owner, _, web = acme
    org_id = org_id_of(app, "acme")
    with lock_free_after_each_write(app, org_id) as free:
        created = client.post(SANDBOXES, json={"project_id": str(web)}, headers=owner.headers)
        path = f"{SANDBOXES}/{created.json['id']}"
        assert (
            client.patch(path, json={"state": "paused"}, headers=owner.headers).status_code == 200
        )
        assert client.delete(path, headers=owner.headers).status_code == 204
    assert created.status_code == 201
    assert free == [True, True, True]

    with lock_free_after_each_write(app, org_id) as free:
        with app.app_context(), state().unit_of_work() as uow:
            access = lock_access(uow, org_slug="acme", user_id=owner.user_id)
            sandboxes.create_sandbox(uow, access=access)
    assert free == [False]


def test_a_one_statement_unit_of_work_refuses_a_second_statement(app, acme):
    owner, _, _ = acme
    with app.app_context():
        access = check_access(state().db, "acme", owner.user_id)
        with state().unit_of_work(one_statement=True) as uow:
            sandboxes.create_sandbox(uow, access=access)
            with pytest.raises(RuntimeError, match="second statement"):
                sandboxes.create_sandbox(uow, access=access)


def test_a_one_statement_unit_of_work_has_no_session_to_run_more_in(app, acme):
    owner, _, _ = acme
    with app.app_context(), state().unit_of_work(one_statement=True) as uow:
        with pytest.raises(RuntimeError, match="runs its LockedWrite alone"):
            lock_access(uow, org_slug="acme", user_id=owner.user_id)


def org_id_of(app, slug: str) -> uuid.UUID:
    with app.app_context(), state().db.read_connection() as conn:
        return conn.scalar(text("SELECT id FROM orgs WHERE slug = :s"), {"s": slug})


def test_an_api_key_write_checks_the_caller_with_the_key_and_then_only_writes(app, client, acme):
    """The key's lookup reads the caller's access in the same statement (a prepared read on
    the driver's connection, ``models.prepared``), and the write's first check uses it: the
    one statement the write sends through SQLAlchemy is the locked write itself."""
    owner, _, web = acme
    created = client.post(SANDBOXES, json={"project_id": str(web)}, headers=owner.headers)
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        path = f"{SANDBOXES}/{created.json['id']}"
        patched = client.patch(path, json={"state": "paused"}, headers=owner.headers)
    finally:
        event.remove(Engine, "before_cursor_execute", before)
    assert patched.status_code == 200, patched.json
    assert len(statements) == 1 and "FOR UPDATE" in statements[0], statements
