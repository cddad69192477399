"""504 gateway_timeout_error: a cold recount over its time limit, or a lease held too long."""

from __future__ import annotations

import threading
import uuid

import pytest
from conftest import World, after_commit_hooks_off, assert_gateway_timeout
from sqlalchemy import create_engine, insert, select, text

import facets.counts.read as read_module
from facets import create_app
from facets.extensions import state
from models import Org, Sandbox

FACETS = "/api/v1/org/big/sandboxes/facets"


@pytest.fixture
def app_config(app_config):
    """The body memo off: every read reaches the Redis layer, which is under test."""
    return {**app_config, "FACETS_BODY_MEMO_BYTES": 0}


@pytest.fixture
def slow_app(app_config):
    """The app with a 50 ms recount limit."""
    app = create_app({**app_config, "RECOUNT_TIMEOUT_MS": 50})
    yield app
    with app.app_context():
        state().db.dispose()


def bulk_sandboxes(app, slug: str, n: int) -> None:
    """Insert ``n`` sandboxes directly: test data, too much for the service layer to be quick."""
    with app.app_context(), state().db.engine.begin() as conn:
        org_id = conn.scalar(select(Org.id).where(Org.slug == slug))
        conn.execute(
            insert(Sandbox),
            [{"id": uuid.uuid4(), "org_id": org_id, "state": "running"} for _ in range(n)],
        )


@pytest.mark.leg("real")
def test_a_recount_blocked_past_its_limit_is_a_504(slow_app):
    """PostgreSQL: the recount waits on a lock until statement_timeout cancels it."""
    world = World(slow_app)
    world.org("big")
    owner = world.caller("big", "owner")
    client = slow_app.test_client()
    locker = create_engine(slow_app.config["DATABASE_URL"])
    with locker.begin() as conn:
        conn.execute(text("LOCK TABLE sandboxes IN ACCESS EXCLUSIVE MODE"))
        assert_gateway_timeout(client.get(FACETS, headers=owner.headers))
    locker.dispose()
    assert client.get(FACETS, headers=owner.headers).status_code == 200


@pytest.mark.leg("fast")
def test_a_recount_interrupted_past_its_limit_is_a_504_on_sqlite(app_config):
    """SQLite: the progress handler interrupts a GROUP BY that runs past the limit."""
    app = create_app({**app_config, "RECOUNT_TIMEOUT_MS": 1})
    world = World(app)
    world.org("big")
    owner = world.caller("big", "owner")
    bulk_sandboxes(app, "big", 60_000)
    assert_gateway_timeout(app.test_client().get(FACETS, headers=owner.headers))

    result = app.test_cli_runner().invoke(args=["facets", "rebuild", "--org", "big"])
    assert result.exit_code == 0, result.output  # the admin rebuild is not time-limited
    response = app.test_client().get(FACETS, headers=owner.headers)
    assert response.json["states"] == [{"count": 60_000, "value": "running"}]
    with app.app_context():
        state().db.dispose()


def test_waiting_past_the_limit_on_another_readers_lease_is_a_504(slow_app):
    world = World(slow_app)
    org_id = world.org("big")
    owner = world.caller("big", "owner")
    with slow_app.app_context():
        cache = state().cache
        assert cache.acquire_lease(org_id) is not None  # another reader is recounting
    client = slow_app.test_client()
    assert_gateway_timeout(client.get(FACETS, headers=owner.headers))

    with slow_app.app_context():
        cache.redis.delete(cache.lease_key(org_id))  # that reader is done (or its lease expired)
    assert client.get(FACETS, headers=owner.headers).status_code == 200


def test_a_lease_whose_reply_was_lost_is_still_ours(slow_app, monkeypatch):
    """The client retries a command whose reply was lost: a retried lease SET finds the key
    the first attempt set, which is this reader's own lease, not another reader's."""
    world = World(slow_app)
    org_id = world.org("big")
    owner = world.caller("big", "owner")
    with slow_app.app_context():
        cache = state().cache
    real_set = cache.redis.set

    def set_then_lose_the_reply(name, value, **kwargs):
        real_set(name, value, **kwargs)  # it went through, and its retry found the key taken
        return None

    monkeypatch.setattr(cache.redis, "set", set_then_lose_the_reply)
    assert slow_app.test_client().get(FACETS, headers=owner.headers).status_code == 200
    assert cache.redis.get(cache.lease_key(org_id)) is None  # given back


@pytest.fixture
def cold_owner(app):
    """The owner of ``big`` (three paused sandboxes), with nothing in Redis."""
    world = World(app)
    world.org("big")
    owner = world.caller("big", "owner")
    world.sandboxes("big", None, "paused", 3)
    with app.app_context():
        state().redis.flushdb()
    return owner


def record_recounts(monkeypatch, then=lambda: None) -> list[uuid.UUID]:
    """The org ids recounted from now on (``then`` runs before each recount proceeds)."""
    recounts: list[uuid.UUID] = []
    real_recount = read_module.recount_org

    def recount(db, org_id, **kwargs):
        recounts.append(org_id)
        then()
        return real_recount(db, org_id, **kwargs)

    monkeypatch.setattr(read_module, "recount_org", recount)
    return recounts


def test_a_waiter_is_served_by_the_lease_holders_install(app, cold_owner, monkeypatch):
    """Many cold readers, one recount: the others are answered from the installed hash."""
    gate = threading.Event()
    results = []

    def fetch():
        results.append(app.test_client().get(FACETS, headers=cold_owner.headers))

    recounts = record_recounts(monkeypatch, then=lambda: gate.wait(5))
    readers = [threading.Thread(target=fetch) for _ in range(4)]
    for reader in readers:
        reader.start()
    while not recounts:
        gate.wait(0.01)
    gate.set()
    for reader in readers:
        reader.join(10)
    assert [r.status_code for r in results] == [200] * 4
    assert {r.get_data() for r in results} == {results[0].get_data()}
    assert len(recounts) == 1


def test_a_reader_granted_the_lease_after_an_install_does_not_recount(app, cold_owner, monkeypatch):
    """Missed the hash, then the previous holder installed it and let go: no second recount."""
    with app.app_context():
        cache = state().cache
    real_acquire = cache.acquire_lease

    def acquire_after_another_reader(org_id):
        # The first reader to ask is overtaken by another one, which recounts, installs and
        # lets go of the lease; only then does the first get it.
        if not recounts:
            monkeypatch.setattr(cache, "acquire_lease", real_acquire)
            assert app.test_client().get(FACETS, headers=cold_owner.headers).status_code == 200
        return real_acquire(org_id)

    recounts = record_recounts(monkeypatch)
    monkeypatch.setattr(cache, "acquire_lease", acquire_after_another_reader)
    response = app.test_client().get(FACETS, headers=cold_owner.headers)
    assert response.status_code == 200
    assert response.json["states"] == [{"count": 3, "value": "paused"}]
    assert len(recounts) == 1


def test_a_waiter_newer_than_the_installed_label_takes_the_freed_lease(
    app, cold_owner, monkeypatch
):
    """The holder installed an older count (an update was lost meanwhile) and let go: a waiter
    at the newer version takes the lease at once, instead of polling out the time limit (and
    then racing the other waiters for the lease, the losers answering 504)."""
    client = app.test_client()
    assert client.get(FACETS, headers=cold_owner.headers).status_code == 200  # installed
    with app.app_context():
        st = state()
        with st.db.read_connection() as conn:
            org_id = conn.scalar(select(Org.id).where(Org.slug == "big"))
    with after_commit_hooks_off(app):
        World(app).sandboxes("big", None, "running", 1)  # its cache update is lost
    lease = st.cache.lease_key(org_id)
    st.redis.set(lease, "another-reader", px=60_000)
    polls = []
    real_cached_counts = read_module.cached_counts

    def cached_counts(cache, access, flt):
        polls.append(access.version)
        if len(polls) == 3:
            st.redis.delete(lease)  # the holder, done with its older count, lets go
        return real_cached_counts(cache, access, flt)

    monkeypatch.setattr(read_module, "cached_counts", cached_counts)
    response = client.get(FACETS, headers=cold_owner.headers)
    assert response.status_code == 200
    assert response.json["states"] == [
        {"count": 3, "value": "paused"},
        {"count": 1, "value": "running"},
    ]
    # first look, two polls under the held lease, then the holder's re-check: no more polls
    assert len(polls) == 4, len(polls)
