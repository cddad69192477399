"""The bench's CPU meter: snapshots of this machine's processes, turned into us per request."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cpu import PARTS, CpuMeter  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc")


def burn(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


BURN_THEN_SAY_SO = (
    "import sys, time\n"
    "deadline = time.process_time() + 0.3\n"
    "while time.process_time() < deadline: pass\n"
    "print('burned', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_the_app_is_the_process_given_and_its_children():
    meter = CpuMeter(os.getpid())
    before = meter.snapshot()
    child = subprocess.Popen(
        [sys.executable, "-c", BURN_THEN_SAY_SO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        burn(0.2)
        assert child.stdout.readline().strip() == "burned"
        spent = meter.per_request(before, meter.snapshot(), requests=10)
    finally:
        child.communicate("")
    # This process and its child burned ~0.5 s of CPU (plus the child's start-up): ~50,000 us
    # for each of 10 requests.
    assert 45_000 <= spent["app"] <= 90_000
    assert spent["machine"] >= 45_000
    assert set(spent) == set(PARTS)


def test_a_finished_child_counts_as_the_load_generator():
    meter = CpuMeter(None)
    before = meter.snapshot()
    subprocess.run(
        [sys.executable, "-c", BURN_THEN_SAY_SO],
        input="",
        text=True,
        capture_output=True,
        check=True,
    )
    spent = meter.per_request(before, meter.snapshot(), requests=3)
    assert spent["load_generator"] >= 90_000  # 0.3 s over 3 requests
    assert spent["app"] == 0


def test_a_process_that_started_meanwhile_counts_from_zero_and_nothing_is_negative():
    before = {
        "processes": {"1": ("postgres", 5.0)},
        "load_generator": 1.0,
        "machine": 10.0,
        "steal": 0.5,
    }
    after = {
        "processes": {"1": ("postgres", 5.5), "2": ("postgres", 0.25), "3": ("redis", 0.1)},
        "load_generator": 1.5,
        "machine": 12.0,
        "steal": 0.5,
    }
    spent = CpuMeter.per_request(before, after, requests=1000)
    assert spent == {
        "app": 0.0,
        "postgres": 750.0,
        "redis": 100.0,
        "load_generator": 500.0,
        "machine": 2000.0,
        "steal": 0.0,
    }


def test_no_requests_or_no_proc_gives_no_figures():
    assert CpuMeter.per_request(None, None, 100) == dict.fromkeys(PARTS)
    snapshot = {"processes": {}, "load_generator": 0.0, "machine": 0.0, "steal": 0.0}
    assert CpuMeter.per_request(snapshot, snapshot, 0) == dict.fromkeys(PARTS)
