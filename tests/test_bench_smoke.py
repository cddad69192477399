"""The benchmark runs end to end at smoke size (no timing is asserted).

On the real leg's PostgreSQL server (``TEST_DATABASE_URL``) the bench creates and drops its own
database, ``facets_bench_smoke`` (or ``BENCH_SMOKE_DB_NAME``); without it, a SQLite file. Redis:
``BENCH_SMOKE_REDIS_URL``, else ``TEST_REDIS_URL``'s server on db 10 (the bench flushes it), else
the embedded fakeredis. The gunicorn + wrk leg runs only
where wrk is installed; the plot only where matplotlib is.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import run  # noqa: E402

SMOKE_REDIS_DB = 10


def smoke_redis_url() -> str:
    if os.environ.get("BENCH_SMOKE_REDIS_URL"):
        return os.environ["BENCH_SMOKE_REDIS_URL"]
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        return "fakeredis://"
    return (
        url.rsplit("/", 1)[0] + f"/{SMOKE_REDIS_DB}"
        if url.count("/") > 2
        else (url + f"/{SMOKE_REDIS_DB}")
    )


def test_bench_smoke(tmp_path, capsys):
    server = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    if not server.startswith("sqlite"):
        assert make_url(server).drivername.startswith("postgres")
    results = run.main(
        [
            "--smoke",
            "--database-url",
            server,
            "--redis-url",
            smoke_redis_url(),
            "--db-name",
            os.environ.get("BENCH_SMOKE_DB_NAME", "facets_bench_smoke"),
            "--out",
            str(tmp_path / "results"),
        ]
    )
    out = capsys.readouterr().out
    assert "== facets benchmark ==" in out
    for name in (
        "floor",
        "owner_warm",
        "owner_redis",
        "owner_cold",
        "member_warm",
        "member_redis",
        "owner_304",
        "owner_awaited",
        "owner_no_sql",
        "owner_no_io",
        "owner_304_no_io",
        "raw_owner",
        "redis_unchanged",
        "redis_after_write",
    ):
        assert name in out
    assert "owner warm / floor" in out
    assert "owner warm / awaited limit" in out
    assert "after a write / unchanged" in out
    assert "no-IO 304 / floor" in out
    assert "Where a warm read and a 304 go, in floors" in out
    assert "Targets (issue 5)" in out
    assert len(results["targets"]) == 9
    assert "with / without" in out
    assert "Bare round trips" in out
    for server in ("database", "redis"):
        assert set(results["round_trips"][server]) == {"back_to_back_us", "after_idle_us", "cpu_us"}
    saved = json.loads((tmp_path / "results" / "latest.json").read_text())
    assert [row["slug"] for row in saved["reads"]] == ["small", "org-300", "org-3k"]
    for row in results["reads"]:
        for name, stats in row["stats"].items():
            assert stats["n"] > 0, name
            assert stats["errors"] == 0, (row["slug"], name)
    if "facets" in results["http"]:  # wrk is installed: as shipped, then with the no-SQL knob
        assert "whole-machine CPU per request, facets / floor" in out
        assert "bench knob: each worker answers the hot-path SQL statement" in out
        for leg in ("http", "http_no_sql"):
            cpu = results[leg]["facets"]["cpu_us"]
            assert set(cpu) == {"app", "postgres", "redis", "load_generator", "machine", "steal"}
            assert cpu["app"] > 0 and cpu["machine"] > 0
            assert results[leg]["facets"]["non_2xx"] == 0
    assert results["problems"] == []


def leg(postgres_us_per_facets_request: float | None) -> dict:
    return {"facets": {"cpu_us": {"postgres": postgres_us_per_facets_request}}}


def test_a_no_sql_knob_that_did_not_take_is_reported():
    assert run.no_sql_knob_problems(leg(130.0), leg(4.0)) == []
    assert run.no_sql_knob_problems(leg(130.0), leg(65.0)) == []
    assert run.no_sql_knob_problems(leg(None), leg(120.0)) == []
    (problem,) = run.no_sql_knob_problems(leg(130.0), leg(120.0))
    assert "120 us per facets request, 130 us as shipped" in problem


def test_the_floor_parts_of_a_read_add_up_to_its_ratio_to_the_floor():
    medians = {
        "floor": 250.0,
        "owner_no_io": 425.0,
        "owner_no_sql": 510.0,
        "owner_warm": 800.0,
        "owner_304_no_io": 460.0,
        "owner_304": 820.0,
    }
    parts = run.floor_parts({"stats": {k: {"median_us": v} for k, v in medians.items()}})
    warm = {k: v for k, v in parts.items() if k.startswith("warm:") and "total" not in k}
    not_modified = {k: v for k, v in parts.items() if k.startswith("304:") and "total" not in k}
    assert list(warm.values()) == pytest.approx([1.0, 0.7, 0.34, 1.16])
    assert sum(warm.values()) == pytest.approx(parts["warm: total = owner warm / floor"])
    assert parts["warm: total = owner warm / floor"] == pytest.approx(3.2)
    assert list(not_modified.values()) == pytest.approx([0.84, 1.44])
    assert 1 + sum(not_modified.values()) == pytest.approx(parts["304: total = 304 / floor"])
    assert parts["304: total = 304 / floor"] == pytest.approx(3.28)
