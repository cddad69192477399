"""Rate-limit budgets: their windows, how their counters are keyed, what a hit left of them.

A budget is a set of fixed windows (``limits`` items, parsed from strings such as
``20/second;600/minute``) that start at their first hit. The counters of one caller share a
hash tag (``LIMITS:{<caller>}:...``), so on a Redis Cluster all of them live in one slot.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from limits import RateLimitItem, parse_many


@dataclass(frozen=True)
class Budget:
    """A named set of windows (``limits`` items) and the message its 429 carries."""

    name: str  # the metric label and part of the counter keys
    items: tuple[RateLimitItem, ...]
    message: str

    @classmethod
    def parse(cls, name: str, what: str, limits: str) -> Budget:
        return cls(
            name,
            tuple(parse_many(limits)),
            f"Too many {what} requests from this caller (limit {limits.replace(';', ', ')}); "
            "retry after the number of seconds in the Retry-After header.",
        )

    @functools.cached_property
    def args(self) -> list[int]:
        """The script's ARGV: each window's limit, then its length in ms (worked out once)."""
        return [item.amount for item in self.items] + [
            item.get_expiry() * 1000 for item in self.items
        ]

    def keys(self, caller: str) -> list[str]:
        # The caller is the hash tag: on a cluster all of a caller's counters share one slot.
        return [
            f"LIMITS:{{{caller}}}:{self.name}:{item.amount}/{item.multiples}/"
            f"{item.GRANULARITY.name}"
            for item in self.items
        ]


@dataclass(frozen=True)
class Window:
    """One window as a hit left it: its limit, its count, the seconds until it resets."""

    amount: int
    count: int
    reset_in: int  # whole seconds, rounded up: the window is surely over by then

    @property
    def remaining(self) -> int:
        return max(0, self.amount - self.count)

    @property
    def spent(self) -> bool:
        return self.count >= self.amount


@dataclass(frozen=True)
class Count:
    """The outcome of one hit: whether it passed, and every window of its budget after it."""

    passed: bool
    windows: list[Window]

    @property
    def reported(self) -> Window:
        """The window the headers describe: the spent one that resets last, else the tightest.

        Nothing passes until every spent window has reset, so on a refusal its ``reset_in``
        is exactly when the next request will pass: the ``Retry-After``.
        """
        spent = [w for w in self.windows if w.spent]
        if spent:
            return max(spent, key=lambda w: w.reset_in)
        return min(self.windows, key=lambda w: (w.remaining, -w.reset_in))


def seconds(ms: float) -> int:
    """``ms`` in whole seconds, rounded up (so a window is surely over by then)."""
    return max(0, math.ceil(ms / 1000))
