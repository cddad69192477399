"""``bench/startup.py`` runs end to end at smoke size (no timing is asserted).

Real leg only: ``flask facets verify`` needs a Redis it can share (not the embedded one). It
creates and drops its own database, ``facets_bench_startup_smoke``, on ``TEST_DATABASE_URL``'s
server, and uses (and flushes) the real leg's own Redis db, ``TEST_REDIS_URL``.
"""

from __future__ import annotations

from bench import startup


def test_startup_bench_smoke(capsys, real_servers):
    server, redis_url = real_servers
    runs = startup.main(
        [
            "--database-url", server, "--db-name", "facets_bench_startup_smoke",
            "--redis-url", redis_url, "--rounds", "1",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "== admin start-up ==" in out and "verify / import of its libraries" in out
    assert set(runs) == {"flask facets verify --org X", "flask --help", "import of its libraries"}
    assert all(len(seconds) == 1 and seconds[0] > 0 for seconds in runs.values())
