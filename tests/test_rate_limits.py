"""Rate limits: 429 per user on every API endpoint, headers, exemptions, fail-open, and refused
requests that spend nothing (so a client retrying flat out keeps its budget)."""

from __future__ import annotations

import functools
import http.client
import time
import uuid
from collections import Counter

import pytest
import redis as redis_lib
from conftest import World, counted, gunicorn_running, make_jwt, redis_down

import facets.edge.limit_windows
from facets.edge.budgets import Budget, Count, Window
from facets.edge.limit_windows import RateLimiter
from facets.extensions import state
from facets.ops.metrics import RATE_LIMITED, REDIS_ERRORS
from models.services import accounts

FACETS = "/api/v1/org/acme/sandboxes/facets"
SANDBOXES = "/api/v1/org/acme/sandboxes"
PROJECTS = "/api/v1/org/acme/projects"


@pytest.fixture
def make_app(make_app):
    """The conftest ``make_app``, with rate limits on (test apps have them off by default)."""
    return functools.partial(make_app, RATE_LIMITS_ENABLED=True)


def acme(app) -> tuple[World, dict]:
    world = World(app)
    world.org("acme")
    return world, {"owner": world.caller("acme", "owner"), "admin": world.caller("acme", "admin")}


def assert_limited(response, limit: int) -> None:
    assert response.status_code == 429, response.json
    assert response.json == {
        "code": 429,
        "detail": response.json["detail"],
        "type": "usage_limit_exceeded_error",
    }
    assert "Too many" in response.json["detail"]
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == "0"
    retry_after = int(response.headers["Retry-After"])
    assert 0 <= retry_after <= 60
    assert response.headers["RateLimit-Reset"] == str(retry_after)


def test_facets_limit_is_per_user(make_app):
    app = make_app(FACETS_RATE_LIMIT="2/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    first = client.get(FACETS, headers=owner)
    assert first.status_code == 200
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert "Retry-After" not in first.headers
    assert client.get(FACETS, headers=owner).status_code == 200
    before = counted(RATE_LIMITED, limit="facets")
    assert_limited(client.get(FACETS, headers=owner), 2)
    assert counted(RATE_LIMITED, limit="facets") == before + 1
    # Another user has a budget of their own; the lists have a budget of their own.
    assert client.get(FACETS, headers=callers["admin"].headers).status_code == 200
    assert client.get(SANDBOXES, headers=owner).status_code == 200


def second_api_key(app, caller) -> str:
    with app.app_context(), state().unit_of_work() as uow:
        return accounts.create_api_key(uow, email=caller.email).key


@pytest.mark.parametrize(
    ("setting", "method", "path", "passed"),
    [
        ("FACETS_RATE_LIMIT", "GET", FACETS, 200),
        ("READ_RATE_LIMIT", "GET", SANDBOXES, 200),
        ("READ_RATE_LIMIT", "GET", PROJECTS, 200),
        ("MUTATION_RATE_LIMIT", "POST", SANDBOXES, 201),
    ],
)
def test_a_user_has_one_budget_whatever_the_credential(make_app, setting, method, path, passed):
    """Two API keys and two JWTs of one user spend one budget: it is the user's."""
    app = make_app(**{setting: "3/minute"})
    _, callers = acme(app)
    owner = callers["owner"]
    client = app.test_client()

    def call(credential: str):
        body = {} if method == "POST" else None
        return client.open(
            path, method=method, json=body, headers={"Authorization": f"Bearer {credential}"}
        )

    credentials = [owner.key, second_api_key(app, owner), make_jwt(owner.user_id)]
    answers = [call(credential) for credential in credentials]
    assert [(a.status_code, a.headers["RateLimit-Remaining"]) for a in answers] == [
        (passed, "2"),
        (passed, "1"),
        (passed, "0"),
    ]
    for credential in [*credentials, make_jwt(owner.user_id, expires_in=600)]:
        assert_limited(call(credential), 3)
    # Another user of the org has a budget of their own.
    assert call(callers["admin"].key).status_code == passed


def test_the_lists_share_one_read_budget_of_their_own(make_app):
    app = make_app(READ_RATE_LIMIT="2/minute", FACETS_RATE_LIMIT="5/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    assert client.get(SANDBOXES, headers=owner).status_code == 200
    listed = client.get(PROJECTS, headers=owner)
    assert (listed.status_code, listed.headers["RateLimit-Remaining"]) == (200, "0")
    before = counted(RATE_LIMITED, limit="reads")
    assert_limited(client.get(SANDBOXES, headers=owner), 2)
    assert_limited(client.get(PROJECTS, headers=owner), 2)
    assert counted(RATE_LIMITED, limit="reads") == before + 2
    # The facets and the writes have budgets of their own.
    assert client.get(FACETS, headers=owner).headers["RateLimit-Remaining"] == "4"
    assert client.post(SANDBOXES, json={}, headers=owner).status_code == 201


def api_calls(app) -> list[tuple[str, str]]:
    """Every (method, path) the API blueprint answers, ids filled in (they need not exist)."""
    calls = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("sandboxes."):
            continue
        values = {arg: "acme" if arg == "org" else str(uuid.uuid4()) for arg in rule.arguments}
        path = rule.build(values)[1]
        calls += [(method, path) for method in sorted(rule.methods - {"OPTIONS"})]
    return calls


def test_every_api_endpoint_has_a_budget(make_app):
    """Whatever the endpoint, a user's second call within a 1/minute budget is refused."""
    limits = ("FACETS_RATE_LIMIT", "READ_RATE_LIMIT", "MUTATION_RATE_LIMIT")
    app = make_app(**dict.fromkeys(limits, "1/minute"))
    world = World(app)
    world.org("acme")
    calls = api_calls(app)
    assert len(calls) >= 12
    for method, path in calls:
        headers = world.caller("acme", "owner").headers  # a fresh budget for each call
        client = app.test_client()
        client.open(path, method=method, json={}, headers=headers)
        second = client.open(path, method=method, json={}, headers=headers)
        assert second.status_code == 429, (method, path, second.status_code)


def test_a_forged_credential_does_not_spend_its_victims_budget(make_app):
    """Wrong secrets behind a real key prefix, or JWTs signed with another secret, count by IP."""
    app = make_app(FACETS_RATE_LIMIT="2/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"]
    forged_key = owner.key[:11] + "0" * (len(owner.key) - 11)
    forged_jwt = make_jwt(owner.user_id, secret="not-the-secret-" * 4)
    for credential in (forged_key, forged_jwt):
        response = client.get(FACETS, headers={"Authorization": f"Bearer {credential}"})
        assert response.status_code == 401
    # Those two spent the client address's budget ...
    assert_limited(client.get(FACETS), 2)
    # ... and none of the owner's.
    assert client.get(FACETS, headers=owner.headers).headers["RateLimit-Remaining"] == "1"
    assert client.get(FACETS, headers=owner.headers).status_code == 200


def test_mutations_share_one_budget(make_app):
    app = make_app(MUTATION_RATE_LIMIT="2/minute", FACETS_RATE_LIMIT="100/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    created = client.post(SANDBOXES, json={}, headers=owner)
    assert created.status_code == 201
    sandbox = f"{SANDBOXES}/{created.json['id']}"
    assert client.patch(sandbox, json={"state": "paused"}, headers=owner).status_code == 200
    before = counted(RATE_LIMITED, limit="mutations")
    assert_limited(client.delete(sandbox, headers=owner), 2)
    assert_limited(client.post("/api/v1/org/acme/projects", json={"key": "k"}, headers=owner), 2)
    assert counted(RATE_LIMITED, limit="mutations") == before + 2
    # Reads go on, and another caller can still write.
    assert client.get(SANDBOXES, headers=owner).status_code == 200
    assert client.get(FACETS, headers=owner).json["states"] == [{"value": "paused", "count": 1}]
    assert client.delete(sandbox, headers=callers["admin"].headers).status_code == 204


def test_the_limit_comes_before_authentication_and_validation(make_app):
    """A refused caller costs no database work: 429 even for a body that would be a 422."""
    app = make_app(MUTATION_RATE_LIMIT="1/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    assert client.post(SANDBOXES, json={"state": "bogus"}, headers=owner).status_code == 422
    assert_limited(client.post(SANDBOXES, json={"state": "bogus"}, headers=owner), 1)


def test_a_spent_read_is_refused_whatever_its_view_would_answer(make_app):
    """A GET's view runs while Redis counts; the 429 still wins over its 422, 404 or 200."""
    app = make_app(FACETS_RATE_LIMIT="1/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    assert client.get(FACETS, headers=owner).status_code == 200
    assert_limited(client.get(FACETS, query_string={"state": "bogus"}, headers=owner), 1)
    assert_limited(client.get("/api/v1/org/nope/sandboxes/facets", headers=owner), 1)
    assert_limited(client.get(FACETS, headers=owner), 1)
    head = client.head(FACETS, headers=owner)
    assert (head.status_code, head.headers["RateLimit-Remaining"]) == (429, "0")


def test_every_redis_connection_goes_back_to_the_pool_clean(make_app):
    """Whatever a limited request answers, its connection is back in the pool, nothing unread."""
    app = make_app(FACETS_RATE_LIMIT="4/minute", MUTATION_RATE_LIMIT="1/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    etag = client.get(FACETS, headers=owner).headers["ETag"]
    assert client.get(FACETS, headers={**owner, "If-None-Match": etag}).status_code == 304
    assert client.get(FACETS, query_string={"state": "bogus"}, headers=owner).status_code == 422
    assert client.get(FACETS).status_code == 401
    assert client.get(FACETS, headers=owner).status_code == 200
    assert client.get(FACETS, headers=owner).status_code == 429
    assert client.post(SANDBOXES, json={}, headers=owner).status_code == 201
    assert client.post(SANDBOXES, json={}, headers=owner).status_code == 429
    with app.app_context():
        pool = state().redis.connection_pool
        assert not pool._in_use_connections
        for connection in pool._available_connections:
            assert not connection.can_read()  # no reply left waiting on a pooled connection


@pytest.fixture
def five_a_minute(make_app):
    """An app allowing 5 facets reads a minute, its client and the owner's headers, after one
    read counted in Redis (4 left)."""
    app = make_app(FACETS_RATE_LIMIT="5/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    assert client.get(FACETS, headers=owner).headers["RateLimit-Remaining"] == "4"
    return app, client, owner


def test_a_flushed_script_is_loaded_again_and_the_hit_counted_once(five_a_minute):
    """NOSCRIPT (Redis restarted or its scripts flushed) runs nothing: the hit is sent again."""
    app, client, owner = five_a_minute
    with app.app_context():
        state().redis.script_flush()
    before = counted(REDIS_ERRORS, op="rate_limit")
    assert client.get(FACETS, headers=owner).headers["RateLimit-Remaining"] == "3"
    assert client.get(FACETS, headers=owner).headers["RateLimit-Remaining"] == "2"
    assert counted(REDIS_ERRORS, op="rate_limit") == before


def test_a_lost_reply_is_retried_on_a_fresh_connection(five_a_minute, monkeypatch):
    """The connection breaks after the script went out: the client's retry counts the hit
    again on a new connection (the lost hit may have counted too), and nothing fails open."""
    app, client, owner = five_a_minute
    with app.app_context():
        connection_class = state().redis.connection_pool.connection_class
    real = connection_class.read_response
    broken = []

    def lose_first_reply(connection, *args, **kwargs):
        if not broken:
            broken.append(connection)
            connection.disconnect()
            raise redis_lib.ConnectionError("connection lost")
        return real(connection, *args, **kwargs)

    monkeypatch.setattr(connection_class, "read_response", lose_first_reply)
    before = counted(REDIS_ERRORS, op="rate_limit")
    response = client.get(FACETS, headers=owner)
    assert response.status_code == 200
    assert broken
    assert response.headers["RateLimit-Remaining"] in ("3", "2")
    assert counted(REDIS_ERRORS, op="rate_limit") == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("OPTIONS", FACETS),
        ("OPTIONS", SANDBOXES),
    ],
)
def test_probes_docs_metrics_and_preflights_are_not_limited(make_app, method, path):
    app = make_app(
        FACETS_RATE_LIMIT="1/minute",
        MUTATION_RATE_LIMIT="1/minute",
        METRICS_PUBLIC=True,
        CORS_ORIGINS="https://dash.example.com",
    )
    client = app.test_client()
    headers = {"Origin": "https://dash.example.com", "Access-Control-Request-Method": "POST"}
    for _ in range(3):
        response = client.open(path, method=method, headers=headers)
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response.headers


def test_limits_can_be_switched_off(make_app):
    app = make_app(FACETS_RATE_LIMIT="1/minute", RATE_LIMITS_ENABLED=False)
    _, callers = acme(app)
    client = app.test_client()
    for _ in range(3):
        response = client.get(FACETS, headers=callers["owner"].headers)
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response.headers


@pytest.mark.parametrize(("testing", "limited"), [(False, True), (True, False)])
def test_limits_are_on_by_default_except_in_a_testing_app(make_app, testing, limited):
    app = make_app(FACETS_RATE_LIMIT="1/minute", RATE_LIMITS_ENABLED=None, TESTING=testing)
    _, callers = acme(app)
    client = app.test_client()
    client.get(FACETS, headers=callers["owner"].headers)
    response = client.get(FACETS, headers=callers["owner"].headers)
    assert response.status_code == (429 if limited else 200)


def test_a_504_keeps_its_own_retry_after(make_app, monkeypatch):
    """The limiter only writes Retry-After on its own 429s."""
    import facets.api.facets as facets_view
    from facets.errors import HTTPError

    class Timeout(HTTPError):
        status = 504
        type = "gateway_timeout_error"

    def slow(*_args, **_kwargs):
        raise Timeout("slow", {"Retry-After": "1"})

    monkeypatch.setattr(facets_view, "answer_facets", slow)
    app = make_app(FACETS_RATE_LIMIT="5/minute")
    _, callers = acme(app)
    response = app.test_client().get(FACETS, headers=callers["owner"].headers)
    assert response.status_code == 504
    assert response.headers["RateLimit-Remaining"] == "4"
    assert response.headers["Retry-After"] == "1"


@pytest.mark.leg("real")
def test_limits_are_counted_in_redis_across_app_instances(make_app):
    """Two app instances (as two gunicorn workers) share one budget through Redis."""
    first = make_app(FACETS_RATE_LIMIT="2/minute")
    _, callers = acme(first)
    second = make_app(FACETS_RATE_LIMIT="2/minute")
    owner = callers["owner"].headers
    assert first.test_client().get(FACETS, headers=owner).status_code == 200
    assert second.test_client().get(FACETS, headers=owner).status_code == 200
    assert_limited(first.test_client().get(FACETS, headers=owner), 2)
    with first.app_context():
        assert any(key.startswith("LIMITS:") for key in state().redis.keys("*"))


@pytest.mark.leg("fast")
def test_redis_down_fails_open_onto_process_memory(make_app):
    """Unreachable Redis: the facets come from SQL, limits count in memory, the fall is counted."""
    app = make_app(FACETS_RATE_LIMIT="2/minute", REDIS_URL="redis://127.0.0.1:1/0")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    before = counted(REDIS_ERRORS, op="rate_limit")
    first = client.get(FACETS, headers=owner)
    assert first.status_code == 200
    assert first.json == {"projects": [], "states": []}
    assert first.headers["RateLimit-Remaining"] == "1"
    assert counted(REDIS_ERRORS, op="rate_limit") == before + 1
    assert client.get(FACETS, headers=owner).status_code == 200
    assert_limited(client.get(FACETS, headers=owner), 2)
    assert counted(REDIS_ERRORS, op="rate_limit") == before + 1


def test_caller_key_identifies_verified_callers_only(make_app):
    from facets.edge.limits import caller_key

    app = make_app()
    _, callers = acme(app)
    owner = callers["owner"]
    cases = {
        owner.key: f"user:{owner.user_id}",
        make_jwt(owner.user_id): f"user:{owner.user_id}",
        make_jwt(owner.user_id, expires_in=-10): "ip:10.1.2.3",
        owner.key[:-1] + ("0" if owner.key[-1] != "0" else "1"): "ip:10.1.2.3",
        "not-a-token": "ip:10.1.2.3",
        f"sk_{uuid.uuid4().hex}": "ip:10.1.2.3",
    }
    for credential, expected in cases.items():
        with app.test_request_context(
            headers={"Authorization": f"Bearer {credential}"},
            environ_base={"REMOTE_ADDR": "10.1.2.3"},
        ):
            assert caller_key() == expected


def test_several_windows_cost_one_redis_call_and_the_tightest_is_reported(make_app, monkeypatch):
    app = make_app(FACETS_RATE_LIMIT="5/minute;2/hour")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    client.get(FACETS, headers=owner)  # warm the counts: only the limiter talks to Redis below
    with app.app_context():
        connection_class = state().redis.connection_pool.connection_class
    calls = []
    real = connection_class.send_command

    def counted(connection, *args, **kwargs):
        calls.append(args[0])
        return real(connection, *args, **kwargs)

    monkeypatch.setattr(connection_class, "send_command", counted)
    monkeypatch.setattr(app.extensions["facets_limiter"], "_memory", None)  # Redis, not memory
    response = client.get(FACETS, headers={**owner, "If-None-Match": "*"})
    assert response.status_code in (200, 304)
    assert calls == ["EVALSHA"]
    # The hour window (2, now spent) is tighter than the minute (5, 3 left).
    assert response.headers["RateLimit-Limit"] == "2"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert 3500 < int(response.headers["RateLimit-Reset"]) <= 3600
    refused = client.get(FACETS, headers=owner)
    assert refused.status_code == 429
    assert refused.headers["RateLimit-Limit"] == "2"
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert "5/minute, 2/hour" in refused.json["detail"]


@pytest.mark.parametrize(
    ("windows", "reported"),
    [
        ([(5, 1, 50), (100, 1, 3000)], (5, 1, 50)),  # fewest remaining
        ([(5, 5, 50), (100, 100, 3000)], (100, 100, 3000)),  # both spent: wait for the later
        ([(5, 5, 50), (100, 7, 3000)], (5, 5, 50)),  # the spent one, though it resets sooner
        ([(5, 4, 10), (100, 99, 3000)], (100, 99, 3000)),  # a tie: the one that lasts longer
    ],
)
def test_the_reported_window(windows, reported):
    assert Count(False, [Window(*w) for w in windows]).reported == Window(*reported)


def test_counting_goes_back_to_redis_when_it_answers_again(make_app, monkeypatch, caplog):
    """Down: memory counts (one transition counted); back: Redis counts again, logged once."""
    monkeypatch.setattr(facets.edge.limit_windows, "REDIS_RETRY_S", 0.0)  # retry on every request
    app = make_app(FACETS_RATE_LIMIT="10/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    assert client.get(FACETS, headers=owner).headers["RateLimit-Remaining"] == "9"  # Redis
    before = counted(REDIS_ERRORS, op="rate_limit")
    with redis_down(app):
        for remaining in ("9", "8"):  # memory starts its own count
            assert client.get(FACETS, headers=owner).headers["RateLimit-Remaining"] == remaining
    assert counted(REDIS_ERRORS, op="rate_limit") == before + 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="facets.edge.limit_windows"):
        back = client.get(FACETS, headers=owner)
    assert back.headers["RateLimit-Remaining"] == "8"  # Redis's count goes on where it was
    assert [r.getMessage() for r in caplog.records] == ["rate limit storage reachable again"]


@pytest.fixture(params=["redis", "memory"])
def limiter(request, app, monkeypatch) -> RateLimiter:
    """A limiter on the leg's Redis, or on process memory (its Redis-down path)."""
    with app.app_context():
        limiter = RateLimiter(state().redis)
    if request.param == "memory":
        monkeypatch.setattr(limiter, "_resting", lambda: True)
    return limiter


def end_window(app, limiter: RateLimiter, key: str) -> None:
    """As if the window counted under ``key`` had just reset."""
    with app.app_context():
        state().redis.delete(key)
    limiter._memory.clear(key)


def test_a_refused_hit_spends_no_window(app, limiter):
    budget = Budget.parse("test", "test", "2/minute;3/hour")
    minute, hour = budget.keys("user:u1")

    def hit() -> Count:
        return limiter.send(budget, "user:u1").count()

    assert [hit().passed for _ in range(12)] == [True, True] + [False] * 10
    end_window(app, limiter, minute)
    # The hour had one hit left: the ten refused ones spent none of it.
    third = hit()
    assert third.passed
    assert [w.count for w in third.windows] == [1, 3]
    refused = hit()
    assert not refused.passed
    assert [w.count for w in refused.windows] == [1, 3]
    assert refused.reported.amount == 3  # the spent window, the hour's


def test_retry_after_is_when_the_next_request_passes(make_app):
    """Retry-After: the seconds (rounded up) until every spent window has reset, and the
    retries meanwhile change nothing."""
    app = make_app(FACETS_RATE_LIMIT="2/second;3/minute")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"]
    second, minute = Budget.parse("facets", "facets", "2/second;3/minute").keys(
        f"user:{owner.user_id}"
    )
    with app.app_context():
        redis = state().redis

    def get():
        return client.get(FACETS, headers=owner.headers)

    assert [get().status_code for _ in range(2)] == [200, 200]
    for _ in range(5):  # only the second is spent
        refused = get()
        assert_limited(refused, 2)
        assert refused.headers["Retry-After"] == "1"
    redis.delete(second)  # that second is over
    assert get().status_code == 200  # the minute's third: the refused ones took none of it
    redis.pexpire(minute, 42_500)
    refused = get()  # only the minute is spent (the second has 1 of 2 left)
    assert_limited(refused, 3)
    assert refused.headers["Retry-After"] == "43"
    redis.set(second, 2, px=700)
    refused = get()  # both are spent: the next request passes when the minute resets
    assert_limited(refused, 3)
    assert refused.headers["Retry-After"] == "43"
    assert redis.get(second) == "2"


@pytest.mark.leg("real")
def test_a_client_that_waits_retry_after_gets_through(make_app):
    app = make_app(MUTATION_RATE_LIMIT="2/second")
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    assert [client.post(SANDBOXES, json={}, headers=owner).status_code for _ in range(2)] == [
        201,
        201,
    ]
    refused = client.post(SANDBOXES, json={}, headers=owner)
    assert_limited(refused, 2)
    time.sleep(int(refused.headers["Retry-After"]))
    assert client.post(SANDBOXES, json={}, headers=owner).status_code == 201


def retry_flat_out(post) -> tuple[Counter, Counter]:
    """Call ``post()`` (it answers a status) back to back for 10 s, retrying every 429 at once:
    the successes and the attempts in each second of the loop."""
    passed, attempts = Counter(), Counter()
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < 10 and attempts.total() < 200_000:
        status = post()
        attempts[int(elapsed)] += 1
        if status == 201:
            passed[int(elapsed)] += 1
        else:
            assert status == 429, status
    return passed, attempts


def assert_whole_budget_through(passed: Counter, attempts: Counter, per_second: int = 20) -> None:
    """At least 95% of the budget got through: of ``per_second`` in each second of the loop,
    or of as many as the client managed to send in a second where it sent fewer (a loaded
    machine), so the count measures the limiter, not the machine."""
    seconds = range(10)
    figures = [(s, passed[s], attempts[s]) for s in seconds]
    assert attempts.total() > passed.total(), f"never over its budget: {figures}"
    allowed = sum(min(per_second, attempts[s]) for s in seconds)
    assert passed.total() >= 0.95 * allowed, (allowed, figures)


@pytest.mark.leg("real")
def test_a_client_retrying_as_fast_as_it_can_gets_its_whole_budget(make_app):
    """On the default mutation budget (20/second; 600/minute), a client that retries every 429
    at once for 10 s gets at least 95% of 20 a second through: its refused requests spend
    nothing (before, they used up the minute: 20-80 got through in the 10 s)."""
    app = make_app()
    per_second = Budget.parse("m", "m", app.config["MUTATION_RATE_LIMIT"]).items[0]
    assert (per_second.amount, per_second.get_expiry()) == (20, 1)
    _, callers = acme(app)
    client = app.test_client()
    owner = callers["owner"].headers
    assert_whole_budget_through(
        *retry_flat_out(lambda: client.post(SANDBOXES, json={}, headers=owner).status_code)
    )


@pytest.mark.leg("real")
def test_under_gunicorn_a_client_retrying_flat_out_gets_its_whole_budget(
    make_app, app_config, tmp_path
):
    """The same through two gunicorn workers (their windows shared in Redis), on one
    keep-alive connection."""
    _, callers = acme(make_app())
    env = {
        "GUNICORN_WORKERS": "2",
        "DATABASE_URL": app_config["DATABASE_URL"],
        "REDIS_URL": app_config["REDIS_URL"],
        "JWT_SECRET": app_config["JWT_SECRET"],
        "LOG_LEVEL": "WARNING",
    }
    headers = {**callers["owner"].headers, "Content-Type": "application/json"}
    with gunicorn_running(env, tmp_path / "gunicorn.log") as base:
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)

        def post() -> int:
            connection.request("POST", SANDBOXES, body=b"{}", headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status

        try:
            assert_whole_budget_through(*retry_flat_out(post))
        finally:
            connection.close()


def test_a_callers_counters_share_one_cluster_slot():
    """Every counter of a caller, in every budget, hashes to one Redis Cluster slot: the one
    script per request touches one slot, as a cluster requires."""
    from redis.cluster import key_slot

    budgets = [
        Budget.parse(name, name, "20/second;600/minute;5000/hour")
        for name in ("facets", "reads", "mutations")
    ]
    for caller in ("user:0f8e4c4e-5d6b-4d0c-9c39-2f1f0f6a0b11", "ip:10.1.2.3"):
        keys = [key for budget in budgets for key in budget.keys(caller)]
        assert len(set(keys)) == 9
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys


def test_a_counter_without_an_expiry_gets_one(app):
    """A counter left without an expiry (not by the script) must not refuse forever."""
    budget = Budget.parse("test", "test", "2/minute")
    (key,) = budget.keys("user:u1")
    with app.app_context():
        limiter = RateLimiter(state().redis)
        state().redis.set(key, 2)
        refused = limiter.send(budget, "user:u1").count()
        assert not refused.passed
        assert 59_000 < state().redis.pttl(key) <= 60_000
    assert refused.windows == [Window(2, 2, 60)]
