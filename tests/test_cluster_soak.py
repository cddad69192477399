"""The scale-out soak (``soak/scale.py``): two gunicorn instances on one PostgreSQL and a
private 3-master, 3-replica Redis Cluster, readers and cross-instance writers for 30 s while
slots migrate, a master dies and its replica takes over, and the cluster restarts empty.

Real leg only (it needs the PostgreSQL server); the cluster is its own, started and stopped
here, so it runs wherever ``redis-server`` is installed (and must, under ``CI=true``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import TEST_DATABASE_URL, require_installed

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from soak import scale  # noqa: E402


@pytest.mark.leg("real")
def test_two_instances_on_a_cluster_under_faults(leg, tmp_path, capsys):
    """No 5xx but facets 504s, every answer equal to SQL at its version, each write visible
    on the next read from the other instance, nothing lost, verify clean afterwards."""
    require_installed(
        [p for p in ("redis-server", "redis-cli") if not shutil.which(p)],
        "install them with: apt-get install -y redis-server",
    )
    report, cross_reads = scale.run_scale_soak(TEST_DATABASE_URL, scale.SHORT_S, tmp_path)
    with capsys.disabled():
        print("\n" + report.summary() + f"\ncross-instance reads judged: {cross_reads}")
    assert report.failures() == []
    assert [what for _, what in report.faults][-1] == "cluster restarted empty"
    assert len(report.faults) == len(scale.FAULTS)
    assert report.workers_after == scale.INSTANCES * scale.WORKERS
    assert cross_reads > 0 and report.verified > report.unverifiable
