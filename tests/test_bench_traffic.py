"""The traffic benchmark runs end to end at smoke size on the real leg (no timing asserted)."""

from __future__ import annotations

import os

import pytest
from conftest import TEST_DATABASE_URL
from test_bench_smoke import smoke_redis_url

from bench import traffic

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL or not os.environ.get("TEST_REDIS_URL"),
    reason="needs TEST_DATABASE_URL and TEST_REDIS_URL (gunicorn workers share one Redis)",
)


def test_traffic_smoke(tmp_path, capsys):
    results = traffic.main(
        [
            "--database-url", TEST_DATABASE_URL,
            "--db-name", os.environ.get("BENCH_SMOKE_DB_NAME", "facets_bench_smoke") + "_traffic",
            "--redis-url", smoke_redis_url(),
            "--orgs", "3", "--max-projects", "5", "--max-sandboxes", "50",
            "--readers", "2", "--hot-writers", "3", "--seconds", "1", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "== traffic benchmark ==" in out
    assert set(results["phases"]) == {
        traffic.FLOOR_PHASE, "0% writes", "2% writes", "10% writes", traffic.HOT_PHASE,
        traffic.HOT_ALONE,
    }  # fmt: skip
    for name, phase in results["phases"].items():
        if name == traffic.FLOOR_PHASE:
            assert phase["reads"]["n"] > 0 and set(phase["reads"]["statuses"]) == {200}
            continue
        if name == traffic.HOT_ALONE:
            assert phase["reads"]["n"] == 0 and phase["hot_writes_ok_per_s"] > 0
            continue
        assert phase["reads"]["n"] > 0, name
        assert set(phase["reads"]["statuses"]) <= {200, 304}, (name, phase["reads"])
        judged = phase["answers"]
        assert judged["wrong"] == 0, (name, judged["examples"])
        assert judged["checked"] + judged["overtaken"] == phase["reads"]["n"], name
        assert phase["cpu_us_per_request"]["app"] > 0, name
    assert results["phases"]["0% writes"]["answers"]["overtaken"] == 0
    hot = results["phases"][traffic.HOT_PHASE]
    assert hot["hot_writes_ok_per_s"] > 0
    assert set(hot["hot_writes"]["statuses"]) <= {200, 201, 429}
    assert results["bare_lock_tx_per_s"] > 0
    assert (tmp_path / "traffic.json").exists()
