"""The fault soak (``soak/``) in short mode: real leg only (it needs the PostgreSQL server).

gunicorn with 2 workers on a scratch database and a private ``redis-server``, both on
127.0.0.1; readers and writers for 25 s while Redis is restarted empty twice and a worker is
SIGKILLed. ``FACETS_SOAK_LONG=1`` runs the long soak (5 minutes, the fault cycle repeated)
instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import TEST_DATABASE_URL

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from soak import run  # noqa: E402


@pytest.mark.leg("real")
def test_fault_soak(leg, tmp_path, capsys):
    """No 5xx but facets 504s, verify agrees, no acknowledged write lost, no wrong facets."""
    long = os.environ.get("FACETS_SOAK_LONG", "").lower() in {"1", "true", "yes", "on"}
    report = run.run_soak(TEST_DATABASE_URL, run.LONG_S if long else run.SHORT_S, tmp_path)
    with capsys.disabled():
        print("\n" + report.summary())
    assert report.failures() == []
    assert report.workers_after == 2
    assert report.verified > report.unverifiable
