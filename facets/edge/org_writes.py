"""At most ``ORG_WRITES_IN_FLIGHT`` writes of one org at a time in this process.

Writers of one org queue on its row lock in PostgreSQL, and each one waiting there holds a
database connection (and, under the gthread workers, a request thread); unbounded, a burst of
writers on one busy org holds them all and every other org's readers wait behind it. So each
write is admitted per org (``facets.api.blueprint.as_caller``, once the caller is known to be
a member, so neither a stranger nor a refused caller takes a place, and before its unit of
work takes a connection): while ``ORG_WRITES_IN_FLIGHT`` of that org's writes are running
here, the next waits up to ``ORG_WRITE_WAIT_MS`` for one to finish, then is refused with a
429 ``usage_limit_exceeded_error`` and ``Retry-After`` (counted as
``facets_rate_limited_total{limit="org_writes"}``). Under the gevent workers a write waiting
here holds a greenlet and nothing else; under gthread it holds a thread, so keep the bound
below ``GUNICORN_THREADS`` and the wait short there.

Only orgs with a write in flight are tracked, so the table is as small as the thread count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app

from facets.errors import HTTPError
from facets.ops.metrics import RATE_LIMITED

RETRY_AFTER_S = 1


class OrgBusy(HTTPError):
    status = 429
    type = "usage_limit_exceeded_error"


class OrgWriteGate:
    """Admits at most ``limit`` writes per org at once, each waiting at most ``wait_s``."""

    def __init__(self, limit: int, wait_s: float) -> None:
        if limit < 1:
            raise RuntimeError(f"ORG_WRITES_IN_FLIGHT must be at least 1; got {limit}")
        self.limit, self.wait_s = limit, wait_s
        self._changed = threading.Condition()
        self._in_flight: dict[str, int] = {}
        self._queued = 0

    def in_flight(self, org: str) -> int:
        with self._changed:
            return self._in_flight.get(org, 0)

    def queued(self) -> int:
        """How many writes (of any org) wait for a place now."""
        with self._changed:
            return self._queued

    @contextmanager
    def admit(self, org: str) -> Iterator[None]:
        """Run the body as one of ``org``'s writes in flight.

        :raise OrgBusy: ``limit`` of its writes were still running after ``wait_s``.
        """
        with self._changed:
            self._queued += 1
            try:
                admitted = self._changed.wait_for(
                    lambda: self._in_flight.get(org, 0) < self.limit, timeout=self.wait_s
                )
            finally:
                self._queued -= 1
            if not admitted:
                RATE_LIMITED.labels(limit="org_writes").inc()
                raise OrgBusy(
                    f"Too many writes to this organization are in progress (at most "
                    f"{self.limit} at once per server process); retry in {RETRY_AFTER_S} s.",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            self._in_flight[org] = self._in_flight.get(org, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                left = self._in_flight[org] - 1
                if left:
                    self._in_flight[org] = left
                else:
                    del self._in_flight[org]
                self._changed.notify_all()


def admitted(org: str):
    """``with admitted(org):`` one of ``org``'s writes in flight in this app's process.

    :raise OrgBusy: the org's writes in flight stayed at the bound for the whole wait.
    """
    return current_app.extensions["facets_org_writes"].admit(org)


def init_app(app: Flask) -> None:
    """The app's gate, from ``ORG_WRITES_IN_FLIGHT`` and ``ORG_WRITE_WAIT_MS``."""
    app.extensions["facets_org_writes"] = OrgWriteGate(
        int(app.config["ORG_WRITES_IN_FLIGHT"]), int(app.config["ORG_WRITE_WAIT_MS"]) / 1000
    )
