"""The waiting read (``?wait=`` with ``If-None-Match``) through the app, on both legs.

The fast leg's notifications go through fakeredis pub/sub, the real leg's through Redis, the
cluster leg's through sharded pub/sub on the cluster; the listener is the app's own thread
either way. A waiting request runs in a thread of its own
(a test client per thread); the test synchronizes with it through the watchers' registry,
never with a sleep.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import acme_org
import pytest
from acme_org import SLUG
from conftest import World

from facets.counts import watch
from facets.extensions import state
from facets.redis_cluster import LazyCluster

pytestmark = pytest.mark.cluster  # also on the Redis Cluster leg (sharded pub/sub)

URL = f"/api/v1/org/{SLUG}/sandboxes/facets"
SANDBOXES = f"/api/v1/org/{SLUG}/sandboxes"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATE_LIMITS_ENABLED": False, "WATCH_RECHECK_S": 30.0}


@pytest.fixture
def acme(world):
    return acme_org.build(world)


def until(condition: Callable[[], bool], what: str, tries: int = 2000) -> None:
    """Block until ``condition`` holds (bounded: 2000 x 10 ms), else fail naming ``what``."""
    pause = threading.Event()
    for _ in range(tries):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError(f"never happened: {what}")


class Waiting:
    """One waiting facets request in a thread; ``response()`` joins it."""

    def __init__(self, app, caller, tag: str, wait: int, query=None) -> None:
        self._result: list = []
        headers = {**caller.headers, "If-None-Match": tag}
        query = {**(query or {}), "wait": str(wait)}

        def run() -> None:
            self._result.append(app.test_client().get(URL, query_string=query, headers=headers))

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def response(self):
        self._thread.join(timeout=120)
        assert self._result, "the waiting request did not finish"
        return self._result[0]


def waiting(app) -> int:
    with app.app_context():
        return state().watchers.waiting()


def create(client, acme, project: str, state_: str = "running") -> None:
    body = {"project_id": str(acme[project]), "state": state_}
    response = client.post(SANDBOXES, json=body, headers=acme["owner"].headers)
    assert response.status_code == 201, response.json


def test_a_writes_version_notice_rides_in_its_cache_update(app, client, acme, monkeypatch):
    """One Redis round trip after a write's commit: the apply script publishes the notice."""
    with app.app_context():
        redis_client = state().redis
    if isinstance(redis_client, LazyCluster):  # its commands are the cluster client's
        redis_client = redis_client.client
    commands: list[str] = []
    execute = redis_client.execute_command

    def spy(*args, **kwargs):
        commands.append(str(args[0]).upper())
        return execute(*args, **kwargs)

    monkeypatch.setattr(redis_client, "execute_command", spy)
    create(client, acme, "web")
    assert "EVALSHA" in commands
    assert not {"PUBLISH", "SPUBLISH"} & set(commands), commands


@pytest.mark.parametrize("wait", ["0", "61", "-1", "soon", "1.5"])
def test_a_wait_out_of_range_is_a_422_envelope(client, acme, wait):
    response = client.get(URL, query_string={"wait": wait}, headers=acme["owner"].headers)
    assert response.status_code == 422
    assert response.json["type"] == "validation_error"
    assert any(e.get("loc", [])[-1:] == ["wait"] for e in response.json["errors"]), response.json


def test_without_if_none_match_or_with_a_stale_tag_it_answers_at_once(
    app, client, acme, monkeypatch
):
    owner = acme["owner"]
    waited: list[int] = []
    with app.app_context():
        watchers = state().watchers
    watching = watchers.watching

    def spy(org_id):
        manager = watching(org_id)

        class Spy:
            def __enter__(self):
                wait = manager.__enter__()
                return lambda version, s: waited.append(version) or wait(version, s)

            def __exit__(self, *exc):
                return manager.__exit__(*exc)

        return Spy()

    monkeypatch.setattr(watchers, "watching", spy)
    plain = client.get(URL, query_string={"wait": "30"}, headers=owner.headers)
    assert plain.status_code == 200
    stale = client.get(
        URL, query_string={"wait": "30"}, headers={**owner.headers, "If-None-Match": '"stale"'}
    )
    assert stale.status_code == 200
    assert stale.data == plain.data and stale.headers["ETag"] == plain.headers["ETag"]
    assert waited == []


def subscribers(app, org_id) -> int:
    """How many connections listen to the org's channel (sharded on a cluster)."""
    with app.app_context():
        client, name = state().redis, watch.channel(org_id)
        if state().watchers._sharded:
            return dict(client.pubsub_shardnumsub(name, target_nodes="all")).get(name, 0)
        return dict(client.pubsub_numsub(name)).get(name, 0)


@pytest.mark.parametrize("notifications", ["published", "lost"])
def test_a_write_in_the_view_wakes_the_waiter_with_exactly_a_fresh_read(make_app, notifications):
    """ "published": the write comes after the listener subscribed (and read the versions
    once), and the database is not read again for 10 minutes: only the message can wake the
    waiter within its 60 s. "lost": no message is ever published, and the listener's database
    recheck (every 0.2 s here) wakes the waiter instead: a lost notification only delays."""
    lost = notifications == "lost"
    app = make_app(RATE_LIMITS_ENABLED=False, WATCH_RECHECK_S=0.2 if lost else 600.0)
    acme = acme_org.build(World(app))
    client = app.test_client()
    if lost:
        with app.app_context():
            state().cache.announce = None  # the cache updates go out without their notices
    member = acme["member"]
    first = client.get(URL, headers=member.headers)
    pending = Waiting(app, member, first.headers["ETag"], wait=60)
    until(lambda: waiting(app) == 1, "the read waits")
    if not lost:
        until(lambda: subscribers(app, acme["org_id"]) == 1, "the listener subscribed")
    create(client, acme, "web")
    woken = pending.response()
    fresh = client.get(URL, headers=member.headers)
    assert woken.status_code == 200
    assert woken.data == fresh.data != first.data
    assert woken.headers["ETag"] == fresh.headers["ETag"]
    assert woken.headers["X-Facets-Version"] == fresh.headers["X-Facets-Version"]
    assert waiting(app) == 0


def test_a_change_the_member_cannot_see_does_not_answer_their_wait(app, client, acme):
    """The member's read wakes inside the app (the org moved), reads its view again, finds
    the same tag and waits on: the answer is the 304 when the time is up, then a visible
    change is a 200."""
    member = acme["member"]
    first = client.get(URL, headers=member.headers)
    tag = first.headers["ETag"]
    with app.app_context():
        watchers = state().watchers
    pending = Waiting(app, member, tag, wait=2)
    until(lambda: waiting(app) == 1, "the read waits")
    woken_before = watchers.wakeups
    create(client, acme, "api")
    create(client, acme, "ops")
    until(lambda: watchers.wakeups > woken_before, "the listener wakes the waiter")
    unchanged = pending.response()
    assert unchanged.status_code == 304
    assert unchanged.headers["ETag"] == tag
    assert int(unchanged.headers["X-Facets-Version"]) == int(first.headers["X-Facets-Version"]) + 2

    pending = Waiting(app, member, tag, wait=60)
    until(lambda: waiting(app) == 1, "the read waits again")
    create(client, acme, "web", "paused")
    assert pending.response().status_code == 200


def test_a_waiting_read_is_counted_once_by_the_rate_limit(make_app):
    app = make_app(RATE_LIMITS_ENABLED=True, FACETS_RATE_LIMIT="3/minute", WATCH_RECHECK_S=30.0)
    acme = acme_org.build(World(app))
    client = app.test_client()
    member = acme["member"]
    with app.app_context():
        watchers = state().watchers
    first = client.get(URL, headers=member.headers)
    assert first.headers["RateLimit-Remaining"] == "2"
    pending = Waiting(app, member, first.headers["ETag"], wait=5)
    until(lambda: waiting(app) == 1, "the read waits")
    woken_before = watchers.wakeups
    for project in ("api", "ops", "api"):  # changes the member cannot see, during the wait
        create(client, acme, project)
    # The waiter wakes and reads its view again at least once (a write that lands while it
    # is reading is already in what it reads: how many wake-ups there are is timing).
    until(lambda: watchers.wakeups > woken_before, "the waiter wakes")
    assert waiting(app) == 1, "woken for a change it cannot see, it waits on"
    waited = pending.response()
    assert waited.status_code == 304
    assert waited.headers["RateLimit-Remaining"] == "1"
    assert client.get(URL, headers=member.headers).headers["RateLimit-Remaining"] == "0"


def test_channels_name_their_org_in_a_hash_tag():
    org = uuid.UUID(int=7)
    name = watch.channel(org)
    assert "{" + str(org) + "}" in name
    assert watch.org_of(name) == org
    assert watch.org_of("facets:nope") is None
    assert watch.org_of("facets:{not-a-uuid}:version") is None
