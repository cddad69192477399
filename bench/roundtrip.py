"""Bare round trips on the app's own drivers: ``SELECT 1`` and Redis ``PING``.

What a request's database statement and Redis call cost before any of its own work, three ways:
back to back; after the server has been idle for ``IDLE_GAP_US`` (on a VM an idle server's
vCPU sleeps, and waking it adds to the next round trip: the in-process scenarios send one
request at a time, so each of their round trips comes after such a gap); and the client CPU
(process time) one round trip costs, which is what bounds a CPU-limited server.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import closing

from flask import Flask

from facets.extensions import state

IDLE_GAP_US = 3000


def _work_for(us: int) -> None:
    """Keep this process busy (not sleeping) for ``us`` microseconds: the servers idle."""
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


def _median_us(call: Callable[[], object], n: int, gap_us: int) -> float:
    samples = []
    for _ in range(n):
        _work_for(gap_us)
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1000


def _cpu_us(call: Callable[[], object], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - started) / n * 1e6


def _figures(call: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(min(n, 50)):
        call()
    return {
        "back_to_back_us": round(_median_us(call, n, 0), 1),
        "after_idle_us": round(_median_us(call, n, IDLE_GAP_US), 1),
        "cpu_us": round(_cpu_us(call, n), 1),
    }


def measure_round_trips(app: Flask, n: int) -> dict:
    """Latency back to back and after an idle gap, and client CPU, of ``n`` calls each."""
    with app.app_context():
        db, redis = state().db, state().redis
    with closing(db.autocommit_engine.raw_connection()) as raw, closing(raw.cursor()) as cursor:

        def select_one() -> None:
            cursor.execute("SELECT 1")
            cursor.fetchall()

        database = _figures(select_one, n)
    return {"idle_gap_us": IDLE_GAP_US, "database": database, "redis": _figures(redis.ping, n)}
