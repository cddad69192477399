"""``bench/admin.py`` runs end to end at smoke size (no timing is asserted).

Real leg only (it bulk-loads with PostgreSQL ``COPY``): it creates and drops its own database,
``facets_bench_admin_smoke``, on ``TEST_DATABASE_URL``'s server, and uses (and flushes) the
real leg's own Redis db, ``TEST_REDIS_URL``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import admin  # noqa: E402


def test_admin_bench_smoke(capsys, real_servers):
    server, redis_url = real_servers
    results = admin.main(
        [
            "--smoke",
            "--database-url",
            server,
            "--db-name",
            "facets_bench_admin_smoke",
            "--redis-url",
            redis_url,
        ]
    )
    out = capsys.readouterr().out
    assert "== admin rebuild / verify benchmark ==" in out
    assert results["meta"]["orgs"] == 300 and results["meta"]["sandboxes"] > 0
    assert set(results["steps"]) == {"group_by", "rebuild", "verify"}
    for name, row in results["steps"].items():
        assert row["median_s"] > 0 and row["ratio"] is not None, name
    assert [name for name, *_ in results["targets"]] == ["rebuild / GROUP BY", "verify / GROUP BY"]
    assert "flask facets rebuild" in out and "Targets (issue 18)" in out
