"""The warm path: served from the Redis hashes with no SQL aggregate, byte-identical to cold.

Statements are counted with conftest's ``statements`` (Core listeners and ``PreparedRead``
runs); the path that answered is read from ``facets_served_total`` deltas (``served``).
"""

from __future__ import annotations

import acme_org
import pytest
from acme_org import MUTATIONS, VIEWS, drop_hashes, get
from conftest import aggregates

from facets.extensions import state


@pytest.fixture
def app_config(app_config):
    """Rate limits off (not under test here), and the body memo: the Redis layer is."""
    return {**app_config, "RATE_LIMITS_ENABLED": False, "FACETS_BODY_MEMO_BYTES": 0}


@pytest.fixture
def acme(world):
    return acme_org.build(world)


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
