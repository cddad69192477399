"""ETag / 304 of the facets: what a tag covers, when it goes stale, and RFC 7232's forms.

A tag is a digest of the caller's view and its body (``facets.counts.etag``): it changes when,
and only when, what the caller sees changes. A 304 of a view memoized at the caller's version
is decided without any Redis read or recount (these tests make them fail, or Redis
unreachable, and still expect it); otherwise the view is read, and the 304 is answered only if
the tag sent is the tag of that fresh body.
"""

from __future__ import annotations

import acme_org
import pytest
from acme_org import MUTATIONS, SLUG, commit_before_the_first_recount, drop_hashes
from conftest import aggregates, redis_down, served, statements

from facets.counts import read as read_module
from facets.counts.body_memo import BodyMemo
from facets.extensions import state

URL = f"/api/v1/org/{SLUG}/sandboxes/facets"


@pytest.fixture
def app_config(app_config):
    """Rate limits off (not under test), and the body memo: a 200 here must read Redis or count."""
    return {**app_config, "RATE_LIMITS_ENABLED": False, "FACETS_BODY_MEMO_BYTES": 0}


@pytest.fixture
def acme(world):
    return acme_org.build(world)


def facets(client, caller, query=None, if_none_match: str | None = None):
    headers = dict(caller.headers)
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    return client.get(URL, query_string=query or {}, headers=headers)


def tag_of(client, caller, query=None) -> str:
    """The quoted ETag of a 200 response."""
    response = facets(client, caller, query)
    assert response.status_code == 200, response.json
    return response.headers["ETag"]


def forbid_cache_and_recount(app, monkeypatch) -> None:
    """From now on any Redis read, lease or recount by the read path is a test failure."""
    with app.app_context():
        cache = state().cache

    def refuse(*_args, **_kwargs):
        raise AssertionError("a 304 must be decided before any Redis read or recount")

    for name in ("read_totals", "read_cells", "snapshot", "acquire_lease", "install"):
        monkeypatch.setattr(cache, name, refuse)
    monkeypatch.setattr(read_module, "recount_org", refuse)


def test_200_carries_a_strong_etag_and_private_no_cache(client, acme):
    response = facets(client, acme["owner"])
    assert response.status_code == 200
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert not etag.startswith("W/")
    assert response.headers["Cache-Control"] == "private, no-cache"


def test_a_memoized_current_tag_gives_304_without_touching_redis_or_counting(
    app, client, acme, monkeypatch
):
    """(Changed with content tags: before, every 304 was decided from the access alone; now it
    needs the body's tag, which the memo holds at the caller's version.)"""
    with app.app_context():
        state().body_memo = BodyMemo(1 << 20)
    views = [(who, q) for who in ("owner", "member") for q in ({}, {"state": "running"})]
    tags = {}
    for who, query in views:
        first = facets(client, acme[who], query)
        assert first.status_code == 200
        tags[who, str(query)] = first.headers["ETag"]

    with monkeypatch.context() as patch:
        forbid_cache_and_recount(app, patch)
        # the refusal really fires on a read that is not memoized
        assert facets(client, acme["owner"], {"state": "paused"}).status_code == 500
        for who, query in views:
            before = served()
            with statements(app) as seen:
                response = facets(client, acme[who], query, if_none_match=tags[who, str(query)])
            assert response.status_code == 304, (who, query)
            assert response.data == b""
            assert response.headers["ETag"] == tags[who, str(query)]
            assert response.headers["Cache-Control"] == "private, no-cache"
            assert aggregates(seen) == []
            assert (served() - before) == {"not_modified": 1}

    with redis_down(app):
        assert facets(client, acme["owner"], if_none_match=tags["owner", "{}"]).status_code == 304


def test_without_the_memo_a_current_tag_still_gives_304_even_with_redis_down(app, client, acme):
    """The memo is off in this module: the 304 comes from a fresh read (here the recount)."""
    tag = tag_of(client, acme["member"])
    assert facets(client, acme["member"], if_none_match=tag).status_code == 304
    with redis_down(app):
        response = facets(client, acme["member"], if_none_match=tag)
    assert response.status_code == 304
    assert response.headers["ETag"] == tag


def test_a_mutation_changes_the_tag_exactly_when_it_changes_the_view(client, acme):
    """(Changed with content tags: before, every mutation in the org made every tag stale.)"""
    callers = ("owner", "member")
    old = {who: facets(client, acme[who]) for who in callers}
    changed = set()
    for mutation, mutate in MUTATIONS.items():
        for who in callers:
            assert (
                facets(client, acme[who], if_none_match=old[who].headers["ETag"]).status_code == 304
            )
        mutate(client, acme)
        for who in callers:
            response = facets(client, acme[who], if_none_match=old[who].headers["ETag"])
            fresh = facets(client, acme[who])
            assert fresh.headers["X-Facets-Version"] != old[who].headers["X-Facets-Version"]
            if fresh.data == old[who].data:
                assert response.status_code == 304, (mutation, who)
            else:
                assert response.status_code == 200, (mutation, who)
                assert response.headers["ETag"] != old[who].headers["ETag"], (mutation, who)
                assert response.data == fresh.data
                changed.add((mutation, who))
            old[who] = fresh
    # every sandbox change is in the owner's view; the new sandbox (in api) is not the member's
    sandbox_changes = [m for m in MUTATIONS if m.endswith("_sandbox")]
    assert {(m, "owner") for m in sandbox_changes} <= changed
    assert ("create_sandbox", "member") not in changed
    assert ("pause_sandbox", "member") in changed


def test_a_change_in_a_project_the_member_cannot_see_keeps_their_tag(client, acme):
    member, owner = acme["member"], acme["owner"]
    before = facets(client, member)
    owner_tag = tag_of(client, owner)
    for project in ("api", "ops"):
        body = {"project_id": str(acme[project]), "state": "running"}
        created = client.post(f"/api/v1/org/{SLUG}/sandboxes", json=body, headers=owner.headers)
        assert created.status_code == 201, created.json
    response = facets(client, member, if_none_match=before.headers["ETag"])
    assert response.status_code == 304
    assert response.headers["ETag"] == before.headers["ETag"]
    # the version still says which counts these are: the org's newest
    assert int(response.headers["X-Facets-Version"]) == int(before.headers["X-Facets-Version"]) + 2
    assert facets(client, owner, if_none_match=owner_tag).status_code == 200


def test_what_changes_nothing_keeps_the_tag(client, world, acme):
    """Reads, no-op and refused changes, and other orgs' changes leave the tag current."""
    owner = acme["owner"]
    old = tag_of(client, owner)
    killed = client.get(
        f"/api/v1/org/{SLUG}/sandboxes", query_string={"state": "killed"}, headers=owner.headers
    ).json["sandboxes"][0]["id"]
    running = client.get(
        f"/api/v1/org/{SLUG}/sandboxes", query_string={"state": "running"}, headers=owner.headers
    ).json["sandboxes"][0]
    no_op = client.patch(
        f"/api/v1/org/{SLUG}/sandboxes/{running['id']}",
        json={"state": "running"},
        headers=owner.headers,
    )
    assert no_op.status_code == 200
    refused = client.patch(
        f"/api/v1/org/{SLUG}/sandboxes/{killed}", json={"state": "running"}, headers=owner.headers
    )
    assert refused.status_code == 409
    world.org("other")
    world.sandboxes("other", None, "running", 2)
    assert facets(client, owner, if_none_match=old).status_code == 304


def test_callers_who_see_different_projects_never_share_a_tag(client, world, acme):
    web, ops = acme["web"], acme["ops"]
    callers = {
        "owner": acme["owner"],
        "member_web": acme["member"],
        "member_web_ops": world.caller(SLUG, "member", projects_=[web, ops]),
        "member_ops": world.caller(SLUG, "member", projects_=[ops]),
        "member_none": world.caller(SLUG, "member"),
    }
    for query in ({}, {"state": "killed"}, {"project_id": str(web)}, {"project_id": str(ops)}):
        tags = {name: tag_of(client, caller, query) for name, caller in callers.items()}
        assert len(set(tags.values())) == len(tags), (query, tags)
        for name, caller in callers.items():
            for other, tag in tags.items():
                expected = 304 if other == name else 200
                assert facets(client, caller, query, if_none_match=tag).status_code == expected

    # owner and admin both see everything: one view, so one tag
    admin = world.caller(SLUG, "admin")
    assert facets(client, admin, if_none_match=tag_of(client, acme["owner"])).status_code == 304


def test_filters_change_the_tag(client, acme):
    owner = acme["owner"]
    queries = [
        {},
        {"state": "running"},
        {"state": "paused"},
        {"state": "running,paused"},
        {"project_id": str(acme["web"])},
        {"project_id": str(acme["api"])},
        {"state": "running", "project_id": str(acme["web"])},
    ]
    tags = [tag_of(client, owner, q) for q in queries]
    assert len(set(tags)) == len(tags)

    # spellings of the same filter are one view
    comma = tags[queries.index({"state": "running,paused"})]
    repeated = client.get(f"{URL}?state=paused&state=running&state=running", headers=owner.headers)
    assert repeated.status_code == 200
    assert repeated.headers["ETag"] == comma


IF_NONE_MATCH_FORMS = [
    ("{tag}", 304),
    ("W/{tag}", 304),  # weak comparison: W/"x" matches "x"
    ('"nope", {tag}', 304),
    ('"nope",W/{tag}', 304),
    ("*", 304),  # a current representation exists
    ('"nope"', 200),
    ('W/"nope"', 200),
    ("{upper}", 200),  # entity tags compare character by character
    ('"{bare}x"', 200),
    ("", 200),
]


def test_if_none_match_forms_per_rfc_7232(client, world, acme):
    tag = tag_of(client, acme["owner"])
    assert tag != tag.upper()
    for header, status in IF_NONE_MATCH_FORMS:
        value = header.format(tag=tag, upper=tag.upper(), bare=tag.strip('"'))
        response = facets(client, acme["owner"], if_none_match=value)
        assert response.status_code == status, value
        assert response.headers["ETag"] == tag
        if status == 304:
            assert response.data == b""
        else:
            assert response.json["states"]

    # "*" means "a current representation exists": a 404 or 403 stays one
    assert (
        client.get(
            "/api/v1/org/nope/sandboxes/facets",
            headers={**acme["owner"].headers, "If-None-Match": "*"},
        ).status_code
        == 404
    )
    assert facets(client, world.caller(), if_none_match="*").status_code == 403


def test_one_tag_one_body_when_a_commit_lands_before_the_cold_recount(
    app, client, acme, monkeypatch
):
    """A commit between the caller's access snapshot and the cold recount.

    Here the member loses project web and two sandboxes are created in web in that gap. The
    response must still be one consistent view: either the body of the tag's version (the
    same bytes as before), or a newer tag whose body does not show web any more.
    """
    member, web = acme["member"], acme["web"]
    before = facets(client, member)
    assert before.status_code == 200
    drop_hashes(app, acme["org_id"])
    raced = commit_before_the_first_recount(app, acme, monkeypatch)
    response = facets(client, member)
    assert raced, "the read was not cold"
    assert response.status_code == 200
    if response.headers["ETag"] == before.headers["ETag"]:
        assert response.data == before.data, "one tag, two different bodies"
    else:
        assert str(web) not in {p["project_id"] for p in response.json["projects"]}
