"""``flask facets verify`` and ``flask facets rebuild`` through the CLI runner.

The hashes are corrupted by hand (HSET on the keys of ``CounterCache.keys``); verify must name
the field, rebuild must repair it and say so, ``--org`` must limit both.
"""

from __future__ import annotations

import uuid

import pytest
import redis as redis_lib
from conftest import served
from sqlalchemy import select

from facets.counts.cache import CounterCache
from facets.extensions import state
from models import Org

pytestmark = pytest.mark.cluster  # also on the Redis Cluster leg


@pytest.fixture
def app_config(app_config):
    """Rate limits off (not under test here), and the body memo: the Redis layer is."""
    return {**app_config, "RATE_LIMITS_ENABLED": False, "FACETS_BODY_MEMO_BYTES": 0}


@pytest.fixture
def orgs(world):
    """acme (web: running 2, paused 1; no project: running 3) and beta (running 1)."""
    world.org("acme")
    web = world.project("acme", "web")
    world.sandboxes("acme", web, "running", 2)
    world.sandboxes("acme", web, "paused", 1)
    world.sandboxes("acme", None, "running", 3)
    world.org("beta")
    world.sandboxes("beta", None, "running", 1)
    with world.app.app_context(), state().db.read_session() as session:
        ids = dict(session.execute(select(Org.slug, Org.id)).all())
    return {
        "web": web,
        "acme": ids["acme"],
        "beta": ids["beta"],
        "acme_owner": world.caller("acme", "owner"),
        "beta_owner": world.caller("beta", "owner"),
    }


def invoke(runner, *args):
    return runner.invoke(args=["facets", *args])


def hset(app, org_id: uuid.UUID, which: str, field: str, value: int) -> None:
    cells, totals, _ = CounterCache.keys(org_id)
    with app.app_context():
        state().redis.hset(cells if which == "cells" else totals, field, value)


def hget(app, org_id: uuid.UUID, which: str, field: str) -> str | None:
    cells, totals, _ = CounterCache.keys(org_id)
    with app.app_context():
        return state().redis.hget(cells if which == "cells" else totals, field)


def diff_rows(output: str) -> list[tuple[str, str, str, str]]:
    """The (org, field, cache, sql) rows of verify's table."""
    lines = output.strip().splitlines()
    assert lines[0].split() == ["org", "field", "cache", "sql"], output
    rows = []
    for line in lines[1:-1]:
        org, *field, cache, sql = line.split()
        rows.append((org, " ".join(field), cache, sql))
    return rows


def warm(client, orgs) -> None:
    for slug in ("acme", "beta"):
        response = client.get(
            f"/api/v1/org/{slug}/sandboxes/facets", headers=orgs[f"{slug}_owner"].headers
        )
        assert response.status_code == 200


def test_verify_agrees_on_a_cold_and_on_a_warm_cache(client, runner, orgs):
    result = invoke(runner, "verify")
    assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 2 orgs\n")
    warm(client, orgs)
    result = invoke(runner, "verify")
    assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 2 orgs\n")


def test_rebuild_fills_a_cold_cache_so_reads_are_warm(client, runner, orgs):
    result = invoke(runner, "rebuild")
    assert result.exit_code == 0, result.output
    assert "rebuilt 2 orgs, 2 differed before" in result.stdout  # cold counts as differing
    before = served()
    warm(client, orgs)
    assert served() - before == {"warm": 2}
    assert invoke(runner, "verify").exit_code == 0


def test_verify_names_each_corrupted_field_and_rebuild_repairs_it(app, client, runner, orgs):
    warm(client, orgs)
    acme, web = orgs["acme"], orgs["web"]
    corruptions = [
        # (hash, field, bad value, verify's field, sql value)
        ("cells", "running:-", 99, "cell running:-", "3"),
        ("cells", f"paused:{web}", 7, f"cell paused:{web}", "1"),
        ("cells", "paused:-", 4, "cell paused:-", "0"),  # a cell SQL does not have
        ("totals", "s:running", 1, "state running", "5"),
        ("totals", f"p:{web}", 30, f"project {web}", "3"),
    ]
    for which, field, bad, shown, sql in corruptions:
        hset(app, acme, which, field, bad)
        result = invoke(runner, "verify")
        assert result.exit_code == 1, result.output
        assert diff_rows(result.stdout) == [("acme", shown, str(bad), sql)]
        assert result.stdout.strip().splitlines()[-1] == "1 differences in 1 of 2 orgs"
        assert hget(app, acme, which, field) == str(bad), "verify must not change anything"

        result = invoke(runner, "rebuild")
        assert result.exit_code == 0, result.output
        assert "rebuilt 2 orgs, 1 differed before" in result.stdout
        assert hget(app, acme, which, field) == (None if sql == "0" else sql)
        result = invoke(runner, "verify")
        assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 2 orgs\n")

    before = served()
    warm(client, orgs)
    assert served() - before == {"warm": 2}, "rebuild leaves the hashes warm"


@pytest.mark.parametrize("damage", ["a count that is not a number", "a key of another type"])
def test_verify_reports_unreadable_hashes_and_rebuild_replaces_them(
    app, client, runner, orgs, damage
):
    warm(client, orgs)
    cells, totals, _ = CounterCache.keys(orgs["acme"])
    with app.app_context():
        if damage == "a count that is not a number":
            state().redis.hset(cells, "running:-", "abc")
        else:
            state().redis.delete(totals)
            state().redis.set(totals, "x")
    result = invoke(runner, "verify")
    assert result.exit_code == 1, result.output
    assert diff_rows(result.stdout) == [("acme", "hashes", "unreadable", "counts")]
    result = invoke(runner, "rebuild")
    assert result.exit_code == 0, result.output
    assert "rebuilt 2 orgs, 1 differed before" in result.stdout
    result = invoke(runner, "verify")
    assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 2 orgs\n")


def test_org_option_limits_verify_and_rebuild(app, client, runner, orgs):
    warm(client, orgs)
    hset(app, orgs["acme"], "cells", "running:-", 42)

    result = invoke(runner, "verify", "--org", "beta")
    assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 1 orgs\n")
    result = invoke(runner, "verify", "--org", "acme")
    assert result.exit_code == 1
    assert diff_rows(result.stdout) == [("acme", "cell running:-", "42", "3")]
    assert result.stdout.strip().splitlines()[-1] == "1 differences in 1 of 1 orgs"

    result = invoke(runner, "rebuild", "--org", "beta")
    assert result.exit_code == 0, result.output
    assert "rebuilt 1 orgs, 0 differed before" in result.stdout
    assert hget(app, orgs["acme"], "cells", "running:-") == "42", "acme was left alone"

    result = invoke(runner, "rebuild", "--org", "acme")
    assert result.exit_code == 0, result.output
    assert "rebuilt 1 orgs, 1 differed before" in result.stdout
    result = invoke(runner, "verify")
    assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 2 orgs\n")


@pytest.mark.parametrize("command", ["verify", "rebuild"])
def test_unknown_org_is_a_one_line_error(runner, orgs, command):
    result = invoke(runner, command, "--org", "nope")
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == ["Error: Organization 'nope' not found."]


@pytest.mark.parametrize("command", ["verify", "rebuild"])
def test_redis_out_of_memory_is_a_one_line_error_not_unreadable_hashes(
    runner, orgs, monkeypatch, command
):
    """At maxmemory with noeviction Redis refuses every command of the pipeline."""

    def refused(self, raise_on_error=True):
        error = redis_lib.exceptions.OutOfMemoryError(
            "command not allowed when used memory > 'maxmemory'."
        )
        queued = len(self)  # a Pipeline's command stack, a ClusterPipeline's command queue
        replies = [error for _ in range(queued)]
        self.reset()
        return replies

    monkeypatch.setattr(redis_lib.client.Pipeline, "execute", refused)
    monkeypatch.setattr(redis_lib.cluster.ClusterPipeline, "execute", refused)
    result = invoke(runner, command)
    assert result.exit_code == 1
    first = min(("acme", "beta"), key=lambda slug: orgs[slug])  # passes go in org id order
    verb = "verified" if command == "verify" else "rebuilt"
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: 2 of 2 orgs not {verb} (resume with --resume-from {first}): Redis is out of"
        " memory (maxmemory reached) and refuses commands; free some."
    )
    assert "unreadable" not in result.output and "differences" not in result.output


def test_rebuild_repairs_a_hash_labelled_ahead_of_sql(app, client, runner, orgs):
    """After a database restore the hash can carry a version SQL has not reached.

    Such a label is impossible for a live commit (a version is applied only after it
    committed), so rebuild, the repair tool, must replace it; else the org is recounted on
    every read, and once SQL reaches the label the stale counts are served warm.
    """
    warm(client, orgs)
    acme = orgs["acme"]
    label = int(hget(app, acme, "cells", "v"))
    for which in ("cells", "totals"):
        hset(app, acme, which, "v", label + 1)
    hset(app, acme, "cells", "running:-", 42)
    assert invoke(runner, "verify", "--org", "acme").exit_code == 1

    result = invoke(runner, "rebuild", "--org", "acme")
    assert result.exit_code == 0, result.output
    result = invoke(runner, "verify", "--org", "acme")
    assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 1 orgs\n")
