"""The warm path: served from the Redis hashes with no SQL aggregate, byte-identical to cold.

Statements are counted with conftest's ``statements`` (Core listeners and ``PreparedRead``
runs); the
path that answered is read from ``facets_served_total`` deltas.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from conftest import statements
from sqlalchemy import select

from facets.cache import CounterCache
from facets.extensions import state
from facets.metrics import FACETS_SERVED
from models import Org

SLUG = "acme"
PATHS = ("warm", "cold", "empty", "not_modified")


def served() -> Counter[str]:
    """How many facets responses each path has answered so far (process-wide)."""
    (family,) = FACETS_SERVED.collect()
    return Counter(
        {s.labels["path"]: int(s.value) for s in family.samples if s.name.endswith("_total")}
    )


def aggregates(seen: list[str]) -> list[str]:
    return [s for s in seen if "count(" in s.lower() or "group by" in s.lower()]


@pytest.fixture
def app_config(app_config):
    """Rate limits off (not under test here), and the body memo: the Redis layer is."""
    return {**app_config, "RATE_LIMITS_ENABLED": False, "FACETS_BODY_MEMO_BYTES": 0}


@pytest.fixture
def acme(world):
    """acme: web, api, ops; sandboxes in every state; an owner and a member of web."""
    world.org(SLUG)
    web = world.project(SLUG, "web", "Web")
    api = world.project(SLUG, "api", "API")
    ops = world.project(SLUG, "ops", "Ops")
    world.sandboxes(SLUG, web, "running", 6)
    world.sandboxes(SLUG, web, "paused", 1)
    world.sandboxes(SLUG, api, "paused", 2)
    world.sandboxes(SLUG, ops, "killed", 2)
    world.sandboxes(SLUG, None, "running", 2)
    world.sandboxes(SLUG, None, "killed", 1)
    with world.app.app_context(), state().db.read_session() as session:
        org_id = session.scalar(select(Org.id).where(Org.slug == SLUG))
    return {
        "org_id": org_id,
        "web": web,
        "api": api,
        "ops": ops,
        "owner": world.caller(SLUG, "owner"),
        "member": world.caller(SLUG, "member", projects_=[web]),
    }


# (caller, query, which cache read serves it warm)
VIEWS = {
    "owner": ("owner", {}, "totals"),
    "owner_states": ("owner", {"state": "running,killed"}, "all cells"),
    "owner_project": ("owner", {"project_id": "web"}, "some cells"),
    "member": ("member", {}, "some cells"),
    "member_state": ("member", {"state": "paused"}, "some cells"),
}


def get(client, acme, view: str):
    """Fetch a view's facets; returns the response, the path that served it and its SQL."""
    who, query, _ = VIEWS[view]
    query = {k: str(acme[v]) if k == "project_id" else v for k, v in query.items()}
    before = served()
    with statements(client.application) as seen:
        response = client.get(
            f"/api/v1/org/{SLUG}/sandboxes/facets", query_string=query, headers=acme[who].headers
        )
    assert response.status_code == 200, response.json
    (path,) = (served() - before).elements()
    return response, path, seen


def spy_cache_reads(app, monkeypatch) -> list[str]:
    """Record which hash each cache read touches: the totals, all cells or some cells."""
    with app.app_context():
        cache = state().cache
    calls: list[str] = []
    read_totals, read_cells = cache.read_totals, cache.read_cells

    def totals(org_id):
        calls.append("totals")
        return read_totals(org_id)

    def cells(org_id, fields):
        calls.append("all cells" if fields is None else "some cells")
        return read_cells(org_id, fields)

    monkeypatch.setattr(cache, "read_totals", totals)
    monkeypatch.setattr(cache, "read_cells", cells)
    return calls


def drop_hashes(app, org_id: uuid.UUID) -> None:
    """Forget the org's hashes (only this org's keys: the real leg shares its Redis)."""
    with app.app_context():
        state().redis.delete(*CounterCache.keys(org_id))


def test_warm_read_runs_no_sql_aggregate_and_matches_cold_bytes(app, client, acme, monkeypatch):
    """Per view: a cold read (the recount), then a warm one from the expected hash."""
    calls = spy_cache_reads(app, monkeypatch)
    for view, (_, _, hash_read) in VIEWS.items():
        drop_hashes(app, acme["org_id"])
        cold, path, seen = get(client, acme, view)
        assert path == "cold", view
        assert aggregates(seen), f"{view}: the cold read ran no recount (listener check)"

        calls.clear()
        warm, path, seen = get(client, acme, view)
        assert (path, aggregates(seen), calls) == ("warm", [], [hash_read]), view
        assert warm.data == cold.data, view
        assert warm.headers["ETag"] == cold.headers["ETag"], view
        assert cold.json["states"], f"{view}: an empty view would prove little"


def test_views_have_the_expected_counts(client, acme):
    """The fixture's views hold what it says (so byte equality means something)."""
    owner = get(client, acme, "owner")[0].json
    assert {s["value"]: s["count"] for s in owner["states"]} == {
        "running": 8,
        "paused": 3,
        "killed": 3,
    }
    member = get(client, acme, "member")[0].json
    assert {s["value"]: s["count"] for s in member["states"]} == {
        "running": 8,
        "paused": 1,
        "killed": 1,
    }
    assert [p["project_key"] for p in member["projects"]] == ["web"]


def _create(client, acme):
    r = client.post(
        f"/api/v1/org/{SLUG}/sandboxes",
        json={"project_id": str(acme["api"]), "state": "paused"},
        headers=acme["owner"].headers,
    )
    assert r.status_code == 201, r.json
    acme["last_sandbox"] = r.json["id"]


def _sandbox_of(client, acme, project: str, state_: str) -> str:
    r = client.get(
        f"/api/v1/org/{SLUG}/sandboxes",
        query_string={"project_id": str(acme[project]), "state": state_},
        headers=acme["owner"].headers,
    )
    assert r.status_code == 200 and r.json["sandboxes"], r.json
    return r.json["sandboxes"][0]["id"]


def _patch_sandbox(client, acme, body_of):
    sandbox = _sandbox_of(client, acme, "web", "running")
    r = client.patch(
        f"/api/v1/org/{SLUG}/sandboxes/{sandbox}",
        json=body_of(acme),
        headers=acme["owner"].headers,
    )
    assert r.status_code == 200, r.json


def _delete_sandbox(client, acme):
    sandbox = _sandbox_of(client, acme, "web", "running")
    r = client.delete(f"/api/v1/org/{SLUG}/sandboxes/{sandbox}", headers=acme["owner"].headers)
    assert r.status_code == 204, r.json


def _project_call(method: str, suffix, body=None, status=200):
    def call(client, acme):
        url = f"/api/v1/org/{SLUG}/projects" + suffix(acme)
        r = client.open(url, method=method, json=body, headers=acme["owner"].headers)
        assert r.status_code == status, r.json

    return call


# In an order where each applies to what the previous ones left (web keeps running sandboxes).
MUTATIONS = {
    "create_sandbox": _create,
    "pause_sandbox": lambda c, a: _patch_sandbox(c, a, lambda _: {"state": "paused"}),
    "kill_sandbox": lambda c, a: _patch_sandbox(c, a, lambda _: {"state": "killed"}),
    "move_sandbox": lambda c, a: _patch_sandbox(c, a, lambda a: {"project_id": str(a["api"])}),
    "unassign_sandbox": lambda c, a: _patch_sandbox(c, a, lambda _: {"project_id": None}),
    "delete_sandbox": _delete_sandbox,
    "create_project": _project_call("POST", lambda a: "", {"key": "new", "name": "New"}, 201),
    "rename_project": _project_call("PATCH", lambda a: f"/{a['web']}", {"name": "Webby"}),
    "add_member": lambda c, a: _project_call(
        "POST", lambda a: f"/{a['api']}/members", {"email": a["member"].email}, 204
    )(c, a),
    "remove_member": _project_call(
        "DELETE", lambda a: f"/{a['web']}/members/{a['member'].user_id}", status=204
    ),
    "delete_project": _project_call("DELETE", lambda a: f"/{a['api']}", status=204),
}


def test_first_read_after_each_mutation_is_warm_and_equals_a_recount(app, client, acme):
    """The after-commit hook moved the hash to the new version: no recount, the right counts.

    After each kind of mutation every view is read warm, then the hashes are dropped and the
    views read again from the recount: both must be the same bytes.
    """
    for view in VIEWS:
        get(client, acme, view)
    for mutation, mutate in MUTATIONS.items():
        mutate(client, acme)
        warm = {}
        for view in VIEWS:
            response, path, seen = get(client, acme, view)
            assert (path, aggregates(seen)) == ("warm", []), (mutation, view)
            warm[view] = response.data

        drop_hashes(app, acme["org_id"])
        for i, view in enumerate(VIEWS):
            response, path, _ = get(client, acme, view)
            assert path == ("cold" if i == 0 else "warm"), (mutation, view)
            assert response.data == warm[view], (mutation, view)
