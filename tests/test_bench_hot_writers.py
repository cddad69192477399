"""``bench/hot_writers.py`` runs two servers side by side at smoke size (no timing asserted)."""

from __future__ import annotations

from bench import hot_writers


def test_hot_writers_smoke(tmp_path, capsys, real_servers):
    server, redis_url = real_servers
    results = hot_writers.main(
        [
            "--database-url", server, "--db-name", "facets_bench_hot_writers_smoke",
            "--redis-url", redis_url, "--writers", "2", "--rounds", "2", "--seconds", "1",
            "--variant", "ORG_WRITES_IN_FLIGHT=1", "--variant", "ORG_WRITES_IN_FLIGHT=2",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert "== hot-org writers side by side ==" in capsys.readouterr().out
    assert set(results) == {"ORG_WRITES_IN_FLIGHT=1", "ORG_WRITES_IN_FLIGHT=2"}
    for figures in results.values():
        assert len(figures["rounds_writes_per_s"]) == 2
        assert figures["writes_per_s"] > 0 and figures["app_us"] > 0


def test_a_variant_names_its_checkout_and_environment():
    v = hot_writers.parse_variant("/tmp/before|GUNICORN_WORKER_CLASS=gthread;ORG_WRITE_WAIT_MS=0")
    assert str(v.root) == "/tmp/before"
    assert v.env == {"GUNICORN_WORKER_CLASS": "gthread", "ORG_WRITE_WAIT_MS": "0"}
    assert hot_writers.parse_variant("A=1").root == hot_writers.ROOT
