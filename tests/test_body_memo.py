"""The body memo: the LRU itself, and the facets call with it in front of the Redis layer.

Integration tests run on both legs and compare the memo's answers with an app of the same
database and the memo off (``truth``): the same bytes and the same tags, after every kind of
write, for callers who see different projects and for different filters.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter

import acme_org
import pytest
from acme_org import MUTATIONS, SLUG, VIEWS, commit_before_the_first_recount, drop_hashes, get
from api_model import ROLES, Scenario, operation
from conftest import World, aggregates, served, statements
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from facets import create_app
from facets.counts.body_memo import ENTRY_OVERHEAD, BodyMemo, MemoEntry, entry_cost
from facets.extensions import state
from models import Org, Role
from models.services import accounts

URL = f"/api/v1/org/{SLUG}/sandboxes/facets"
ORG_A, ORG_B = uuid.UUID(int=1), uuid.UUID(int=2)


def body_of(size: int, mark: str = "x") -> MemoEntry:
    """An entry (tagged ``mark``) that costs exactly ``size`` bytes."""
    return MemoEntry((mark * (size - ENTRY_OVERHEAD - len(mark))).encode(), mark)


# --- the LRU ---------------------------------------------------------------------------------


def test_lru_evicts_least_recently_used_first_and_stays_within_the_bound():
    memo = BodyMemo(max_bytes=3000)
    for tag in ("a", "b", "c"):
        memo.put(ORG_A, 1, tag, body_of(1000, tag))
    assert (len(memo), memo.held_bytes) == (3, 3000)
    assert memo.get(ORG_A, 1, "a") == body_of(1000, "a")  # "b" is now the least recent
    memo.put(ORG_B, 7, "d", body_of(1500, "d"))
    assert memo.get(ORG_A, 1, "b") is None
    assert memo.get(ORG_A, 1, "c") is None  # 1500 more bytes took two entries
    assert memo.get(ORG_A, 1, "a") == body_of(1000, "a")
    assert memo.get(ORG_B, 7, "d") == body_of(1500, "d")
    assert (len(memo), memo.held_bytes) == (2, 2500)


def test_an_entry_bigger_than_the_bound_is_not_stored_and_evicts_nothing():
    memo = BodyMemo(max_bytes=2000)
    memo.put(ORG_A, 1, "a", body_of(1000))
    memo.put(ORG_A, 1, "big", body_of(2001))
    assert memo.get(ORG_A, 1, "big") is None
    assert memo.get(ORG_A, 1, "a") == body_of(1000)
    memo.put(ORG_A, 1, "exact", body_of(1000))
    assert memo.held_bytes == 2000 and len(memo) == 2


def test_a_zero_bound_holds_nothing():
    memo = BodyMemo(max_bytes=0)
    memo.put(ORG_A, 1, "a", MemoEntry(b"", ""))
    assert memo.get(ORG_A, 1, "a") is None
    assert (len(memo), memo.held_bytes) == (0, 0)


def test_replacing_an_entry_counts_its_bytes_once():
    memo = BodyMemo(max_bytes=5000)
    memo.put(ORG_A, 1, "a", body_of(1000))
    memo.put(ORG_A, 1, "a", body_of(1200))
    assert (len(memo), memo.held_bytes) == (1, 1200)


def test_a_newer_version_supersedes_the_orgs_entries():
    memo = BodyMemo(max_bytes=10_000)
    memo.put(ORG_A, 4, "a", body_of(500))
    memo.put(ORG_A, 4, "b", body_of(500))
    memo.put(ORG_B, 9, "a", body_of(500))
    assert memo.get(ORG_A, 5, "a") is None  # a lookup at version 5: nobody asks for 4 again
    assert len(memo) == 1
    memo.put(ORG_A, 5, "a", body_of(600, "5"))
    memo.put(ORG_A, 4, "b", body_of(500))  # a slow read of version 4: not stored
    assert memo.get(ORG_A, 5, "a") == body_of(600, "5")
    memo.put(ORG_A, 6, "c", body_of(700))  # a store at a newer version supersedes too
    assert memo.get(ORG_A, 6, "a") is None and memo.get(ORG_A, 6, "c") == body_of(700)
    assert memo.get(ORG_B, 9, "a") == body_of(500)
    assert memo.held_bytes == 1200


def test_a_lookup_below_the_held_version_drops_the_org_restored_database():
    """Back in time, version 5 may come again with other contents: 5's entries must go."""
    memo = BodyMemo(max_bytes=10_000)
    memo.put(ORG_A, 5, "a", body_of(500, "old"))
    memo.put(ORG_A, 5, "b", body_of(500, "old"))
    memo.put(ORG_B, 5, "a", body_of(500))
    assert memo.get(ORG_A, 3, "a") is None
    assert (len(memo), memo.held_bytes) == (1, 500)
    memo.put(ORG_A, 3, "a", body_of(500, "3"))
    assert memo.get(ORG_A, 3, "a") == body_of(500, "3")
    assert memo.get(ORG_A, 5, "a") is None  # the database's 5 again: not the old 5's body
    assert memo.get(ORG_B, 5, "a") == body_of(500)


def test_threads_only_ever_get_the_body_of_the_key_they_ask_for():
    """Smoke test: threads store and look up at random (versions too, so orgs are dropped)
    over a bound that forces eviction; every hit is the body stored for that exact key."""
    memo = BodyMemo(max_bytes=40 * (ENTRY_OVERHEAD + 60))
    orgs = [uuid.UUID(int=i) for i in range(4)]
    failures: list[str] = []
    hits = Counter()

    def body(org: uuid.UUID, version: int, tag: str) -> MemoEntry:
        return MemoEntry(f"{org}|{version}|{tag}".encode().ljust(60, b"."), tag.zfill(2))

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(4000):
                org, version, tag = rng.choice(orgs), rng.randint(1, 3), str(rng.randint(0, 20))
                if rng.random() < 0.5:
                    got = memo.get(org, version, tag)
                    if got is not None:
                        hits[seed] += 1
                        if got != body(org, version, tag):
                            failures.append(f"{org} {version} {tag}: {got!r}")
                else:
                    memo.put(org, version, tag, body(org, version, tag))
        except Exception as exc:  # a thread's exception would otherwise be lost
            failures.append(repr(exc))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(hits.values()) > 0
    assert 0 < memo.held_bytes <= memo.max_bytes
    assert memo.held_bytes == len(memo) * entry_cost(body(orgs[0], 1, "0"))


# --- the facets call with the memo in front --------------------------------------------------


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATE_LIMITS_ENABLED": False}  # no Redis call of the rate limiter


@pytest.fixture
def acme(world):
    return acme_org.build(world)


@pytest.fixture
def truth(make_app):
    """A client of another app on the same database with the memo off."""
    return make_app(FACETS_BODY_MEMO_BYTES=0).test_client()


def without_request_id(response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.items() if k != "X-Request-ID"]


def assert_same_response(got, expected, context) -> None:
    assert got.data == expected.data, context
    assert without_request_id(got) == without_request_id(expected), context


def read_all(client, acme) -> dict[str, tuple]:
    """Every view of ``VIEWS``: its response and path."""
    return {view: get(client, acme, view)[:2] for view in VIEWS}


def test_the_bound_comes_from_the_environment(app_config, monkeypatch):
    def bound() -> int:
        app = create_app(app_config)
        with app.app_context():
            return state().body_memo.max_bytes

    monkeypatch.delenv("FACETS_BODY_MEMO_BYTES", raising=False)
    assert bound() == 32 * 1024 * 1024
    monkeypatch.setenv("FACETS_BODY_MEMO_BYTES", "0")
    assert bound() == 0


def test_a_repeated_read_is_the_memo_with_identical_bytes_and_headers(client, acme):
    member, api = acme["member"], str(acme["api"])
    first = read_all(client, acme)
    assert all(path in ("cold", "warm") for _, path in first.values()), first
    again = read_all(client, acme)
    for view, (response, path) in again.items():
        assert path == "memo", view
        assert_same_response(response, first[view][0], view)
        assert response.content_type == "application/json"

    before = served()
    empty = [client.get(URL, query_string={"project_id": api}, headers=member.headers)]
    empty.append(client.get(URL, query_string={"project_id": api}, headers=member.headers))
    assert served() - before == {"empty": 1, "memo": 1}
    assert_same_response(empty[1], empty[0], "a project the member cannot see")


def test_a_memo_hit_reads_neither_redis_nor_counts_only_what_a_304_reads(
    app, client, acme, monkeypatch
):
    first = read_all(client, acme)
    with app.app_context():
        redis_client = state().redis
    commands: list[str] = []
    execute = redis_client.execute_command

    def spy(*args, **kwargs):
        commands.append(args[0])
        return execute(*args, **kwargs)

    monkeypatch.setattr(redis_client, "execute_command", spy)
    for view, (who, query, _) in VIEWS.items():
        response, path, seen = get(client, acme, view)
        assert (path, commands, aggregates(seen)) == ("memo", [], []), view
        query = {k: str(acme[v]) if k == "project_id" else v for k, v in query.items()}
        with statements(app) as seen_by_304:
            not_modified = client.get(
                URL,
                query_string=query,
                headers={**acme[who].headers, "If-None-Match": first[view][0].headers["ETag"]},
            )
        assert not_modified.status_code == 304, view
        assert seen == seen_by_304, view
    assert commands == []


def test_every_kind_of_write_makes_the_next_read_miss_and_be_exact(client, acme, truth):
    read_all(client, acme)
    for mutation, mutate in MUTATIONS.items():
        mutate(client, acme)
        for view in VIEWS:
            response, path, _ = get(client, acme, view)
            assert path != "memo", (mutation, view)
            assert_same_response(response, get(truth, acme, view)[0], (mutation, view))
            repeated, path, _ = get(client, acme, view)
            assert path == "memo", (mutation, view)
            assert_same_response(repeated, response, (mutation, view))


def set_role(app, email: str, role: Role) -> None:
    with app.app_context(), state().unit_of_work() as uow:
        accounts.add_member(uow, org_slug=SLUG, email=email, role=role)


def test_a_role_change_gives_the_view_of_the_new_role(app, client, acme, truth):
    """A role change does not bump the org version; the visible projects are in the key."""
    owner_view = get(client, acme, "owner")[0]
    member_view = get(client, acme, "member")[0]
    assert get(client, acme, "member")[1] == "memo"

    set_role(app, acme["member"].email, Role.ADMIN)
    as_admin = get(client, acme, "member")[0]
    assert_same_response(as_admin, get(truth, acme, "member")[0], "admin")
    assert_same_response(as_admin, owner_view, "an admin sees what the owner sees")
    assert as_admin.headers["ETag"] != member_view.headers["ETag"]

    set_role(app, acme["member"].email, Role.MEMBER)
    as_member = get(client, acme, "member")[0]
    assert_same_response(as_member, get(truth, acme, "member")[0], "member again")
    assert_same_response(as_member, member_view, "member again")


def test_callers_who_see_different_projects_never_share_a_body(app, client, world, acme, truth):
    callers = {
        "owner": acme["owner"],
        "admin": world.caller(SLUG, "admin"),
        "member of web": acme["member"],
        "member of api and ops": world.caller(SLUG, "member", projects_=[acme["api"], acme["ops"]]),
        "member of none": world.caller(SLUG, "member"),
        "another member of web": world.caller(SLUG, "member", projects_=[acme["web"]]),
    }
    bodies = {}
    for name, caller in callers.items():
        first = client.get(URL, headers=caller.headers)
        before = served()
        again = client.get(URL, headers=caller.headers)
        assert served() - before == {"memo": 1}, name
        assert_same_response(again, first, name)
        assert_same_response(again, truth.get(URL, headers=caller.headers), name)
        bodies[name] = again.data
    assert bodies["admin"] == bodies["owner"]
    assert bodies["another member of web"] == bodies["member of web"]
    distinct = {bodies[name] for name in callers}
    assert len(distinct) == 4  # owner/admin, web, api+ops, none
    with app.app_context():
        assert len(state().body_memo) == 4


def test_different_filters_are_different_entries(app, client, acme, truth):
    owner, web = acme["owner"], str(acme["web"])
    queries = [
        {},
        {"state": "running"},
        {"state": "paused"},
        {"state": "running,paused"},
        {"project_id": web},
        {"state": "paused", "project_id": web},
    ]
    bodies = set()
    for query in queries:
        first = client.get(URL, query_string=query, headers=owner.headers)
        before = served()
        again = client.get(URL, query_string=query, headers=owner.headers)
        assert served() - before == {"memo": 1}, query
        assert_same_response(again, first, query)
        expected = truth.get(URL, query_string=query, headers=owner.headers)
        assert_same_response(again, expected, query)
        bodies.add(again.data)
    assert len(bodies) == len(queries)
    before = served()
    swapped = client.get(URL, query_string={"state": "paused,running"}, headers=owner.headers)
    assert served() - before == {"memo": 1}, "the same states in another order: the same view"
    assert_same_response(
        swapped,
        truth.get(URL, query_string={"state": "paused,running"}, headers=owner.headers),
        "paused,running",
    )
    with app.app_context():
        assert len(state().body_memo) == len(queries)


def test_a_redis_flush_leaves_the_memo_exact_for_its_version(app, client, acme, truth):
    first = read_all(client, acme)
    with app.app_context():
        state().redis.flushdb()  # the leg's own db (the real leg's server is shared)
    for view, (response, path) in read_all(client, acme).items():
        assert path == "memo", view
        assert_same_response(response, first[view][0], view)
    MUTATIONS["create_sandbox"](client, acme)
    with app.app_context():
        state().redis.flushdb()
    for view, (response, path) in read_all(client, acme).items():
        assert path in ("cold", "warm"), view
        assert_same_response(response, get(truth, acme, view)[0], view)


def test_a_body_is_memoized_under_the_access_it_was_counted_for(
    app, client, acme, truth, monkeypatch
):
    """Commits land between the caller's access snapshot and the cold recount: the body is of
    the recount's version, and that is the key it is stored and found under."""
    member = acme["member"]
    before = truth.get(URL, headers=member.headers)  # the version of the caller's snapshot
    drop_hashes(app, acme["org_id"])
    raced = commit_before_the_first_recount(app, acme, monkeypatch)
    raced_response = client.get(URL, headers=member.headers)
    assert raced and raced_response.status_code == 200
    assert int(raced_response.headers["X-Facets-Version"]) > int(before.headers["X-Facets-Version"])
    response_before = served()
    again = client.get(URL, headers=member.headers)
    assert served() - response_before == {"memo": 1}
    assert_same_response(again, raced_response, "the raced body, under its own version")
    assert_same_response(again, truth.get(URL, headers=member.headers), "the raced body")


def test_a_restored_database_does_not_bring_back_a_body_of_the_same_version(
    app, client, acme, truth
):
    """SQL goes back one version; the next write reaches the old number with other contents."""
    first, _, _ = get(client, acme, "owner")
    version = int(first.headers["X-Facets-Version"])
    with app.app_context(), state().db.engine.begin() as conn:
        conn.execute(update(Org).where(Org.id == acme["org_id"]).values(facet_version=version - 1))
    restored, path, _ = get(client, acme, "owner")
    assert path != "memo" and restored.headers["X-Facets-Version"] == str(version - 1)
    MUTATIONS["create_sandbox"](client, acme)
    response, path, _ = get(client, acme, "owner")
    assert response.headers["X-Facets-Version"] == str(version)
    assert path != "memo"
    assert response.data != first.data
    assert_same_response(response, get(truth, acme, "owner")[0], "after the restore")


# --- property: random writes and reads, a memo small enough to evict -------------------------

TINY_MEMO_BYTES = 1024  # a few small bodies: repeats hit, and evict each other
SIX_VIEWS = [(who, states, None) for who in (0, 2) for states in ([], ["running"], ["paused"])]
reads = st.lists(
    st.tuples(
        st.integers(0, len(ROLES) - 1),
        st.lists(st.sampled_from(["running", "paused", "killed"]), max_size=2, unique=True),
        st.none() | st.integers(0, 50),
    ),
    min_size=1,
    max_size=6,
)


def test_reads_between_random_writes_equal_brute_force_with_a_tiny_memo(make_app):
    """Every read equals a brute-force count; repeats are memo hits while their entry lasts,
    and the bound is small enough that entries are evicted (both are seen happening)."""
    app = make_app(FACETS_BODY_MEMO_BYTES=TINY_MEMO_BYTES)
    client = app.test_client()
    world = World(app)
    seen = Counter()

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(steps=st.lists(st.tuples(operation, reads), min_size=3, max_size=12))
    @example(steps=[(("create", 0, None, "running"), SIX_VIEWS)] * 2)  # more than fit
    def run(steps) -> None:
        with app.app_context():
            scenario = Scenario(client, world)
            for op, views in steps:
                scenario.apply(op)
                stored: dict[str, str] = {}  # ETag → version of a body that fit in the memo
                for _ in range(2):
                    for who, states, project_slot in views:
                        project_id = scenario_project(scenario, project_slot)
                        seen[check(client, scenario, who, states, project_id, stored)] += 1
                assert state().body_memo.held_bytes <= TINY_MEMO_BYTES

    run()
    assert seen["memo"] > 0 and seen["evicted"] > 0, seen


def scenario_project(scenario: Scenario, slot: int | None) -> uuid.UUID | None:
    if slot is None:
        return None
    return scenario.projects[slot % len(scenario.projects)] if scenario.projects else uuid.uuid4()


def check(client, scenario, who, states, project_id, stored: dict[str, str]) -> str:
    """Read one view and compare it with brute force; "evicted" for a miss of a view whose
    body at this version was stored by an earlier read, else the path."""
    query = {"state": ",".join(states)} if states else {}
    if project_id is not None:
        query["project_id"] = str(project_id)
    before = served()
    response = client.get(
        f"/api/v1/org/{scenario.slug}/sandboxes/facets",
        query_string=query,
        headers=scenario.callers[who].headers,
    )
    assert response.status_code == 200, response.json
    assert response.json == scenario.brute_force(who, states, project_id)[1]
    (path,) = (served() - before).elements()
    etag, version = response.headers["ETag"], response.headers["X-Facets-Version"]
    if path != "memo" and stored.get(etag) == version:
        return "evicted"
    if entry_cost(MemoEntry(response.data, etag.strip('"'))) <= TINY_MEMO_BYTES:
        stored[etag] = version
    return path
