"""``bench/startup.py`` runs end to end at smoke size (no timing is asserted).

Real leg only: ``flask facets verify`` needs a Redis it can share (not the embedded one). It
creates and drops its own database, ``facets_bench_startup_smoke``, on ``TEST_DATABASE_URL``'s
server, and uses (and flushes) the real leg's own Redis db, ``TEST_REDIS_URL``.
"""

from __future__ import annotations

import os

from conftest import require_installed

from bench import startup


def test_startup_bench_smoke(capsys):
    server, redis_url = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    require_installed(
        [] if server and redis_url else ["TEST_DATABASE_URL/TEST_REDIS_URL"],
        "the start-up bench needs the real leg's PostgreSQL and Redis",
    )
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
