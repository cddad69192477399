"""Timed scenarios, run interleaved in blocks so that every ratio compares neighbours in time.

The machine is small and shared: a burst of someone else's work slows whatever runs then. So no
scenario is measured in one long stretch; each round runs a short block of every scenario, in
an order rotated round by round, and the statistics are medians and p99s over all the blocks.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Scenario:
    """One kind of request: ``run`` is timed (and says whether it succeeded), ``prepare`` not."""

    name: str
    run: Callable[[], bool]
    total: int
    prepare: Callable[[], None] | None = None
    samples_ns: list[int] = field(default_factory=list)
    errors: int = 0

    def once(self) -> None:
        if self.prepare is not None:
            self.prepare()
        started = time.perf_counter_ns()
        ok = self.run()
        self.samples_ns.append(time.perf_counter_ns() - started)
        if not ok:
            self.errors += 1


@dataclass(frozen=True)
class Stats:
    """Latency summary in microseconds."""

    n: int
    median_us: float
    p99_us: float
    mean_us: float
    errors: int

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "median_us": round(self.median_us, 1),
            "p99_us": round(self.p99_us, 1),
            "mean_us": round(self.mean_us, 1),
            "errors": self.errors,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(samples_ns: list[int], errors: int = 0) -> Stats:
    values = sorted(s / 1000 for s in samples_ns)
    if not values:
        return Stats(0, math.nan, math.nan, math.nan, errors)
    return Stats(
        len(values),
        statistics.median(values),
        percentile(values, 99),
        statistics.fmean(values),
        errors,
    )


def run_interleaved(scenarios: list[Scenario], block: int, warmup: int = 0) -> dict[str, Stats]:
    """Run every scenario ``total`` times, in rotating rounds of small blocks; summarize each.

    A scenario with a smaller ``total`` gets proportionally smaller blocks, so all of them are
    spread over the same rounds.
    """
    for scenario in scenarios:
        for _ in range(min(warmup, max(1, scenario.total // 4))):
            scenario.once()
        scenario.samples_ns.clear()
        scenario.errors = 0
    longest = max(s.total for s in scenarios)
    rounds = max(1, math.ceil(longest / block))
    for r in range(rounds):
        shift = r % len(scenarios)
        for scenario in scenarios[shift:] + scenarios[:shift]:
            due = math.ceil(scenario.total * (r + 1) / rounds) - len(scenario.samples_ns)
            for _ in range(max(0, due)):
                scenario.once()
    return {s.name: summarize(s.samples_ns, s.errors) for s in scenarios}
