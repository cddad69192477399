"""Waiting reads: org version notifications after commit, and one listener per process.

A commit's version notice goes out with its cache update: the counter cache's apply script
publishes the org's new facet version on the org's channel (``facets:{<org id>}:version``; the
hash tag keeps a channel on its org's shard), as ``notice`` names it, in the same round trip.
In each process one listener thread (a greenlet under gevent workers) holds one pub/sub connection,
subscribes to the channels of the orgs that have waiting reads, and wakes the waiters of an
org whose version moved past the one their answer is of. A woken waiter reads its view again
through the normal read path (``facets.counts.read.answer_facets``); the notification only
says *when* to look, never *what* to answer.

Invariants:

- A lost notification (Redis down, a message published before the subscription took hold)
  only delays a wake-up: the listener also reads the versions of its watched orgs from the
  database every ``recheck_s`` seconds, and once as soon as a new subscription is confirmed,
  and wakes whoever is behind.
- A waiter is woken only by a version newer than the one its answer is of, so an org that
  does not change costs its waiters nothing, and a waiter whose view did not change goes back
  to sleep after one (usually memoized) read.
- The listener runs only while some read waits (it stops ``LINGER_S`` after the last one), so
  idle processes and test apps hold no thread and no connection.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

import redis
from sqlalchemy import select

from facets.ops.metrics import WAITING_READS, WATCH_WAKEUPS
from models import Database, Org

log = logging.getLogger(__name__)

LISTEN_TICK_S = 0.25  # how soon a new waiter's org is subscribed to
LINGER_S = 10.0  # the listener outlives its last waiter this long (a tab's next wait comes soon)


def channel(org_id: uuid.UUID) -> str:
    """The pub/sub channel of an org's version notifications."""
    return f"facets:{{{org_id}}}:version"


def org_of(channel_name: str) -> uuid.UUID | None:
    """The org a channel is of (None: not one of ours)."""
    try:
        return uuid.UUID(channel_name.split("{", 1)[1].split("}", 1)[0])
    except (IndexError, ValueError):
        return None


def db_versions(db: Database, org_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The facet versions of these orgs now (deleted orgs are left out)."""
    with db.read_connection() as conn:
        rows = conn.execute(select(Org.id, Org.facet_version).where(Org.id.in_(list(org_ids))))
        return {org_id: version for org_id, version in rows}


class _Waiter:
    """One waiting read: the version its answer is of, and the event that wakes it."""

    __slots__ = ("version", "event")

    def __init__(self) -> None:
        self.version = -1
        self.event = threading.Event()


class Watchers:
    """This process's waiting reads and the listener that wakes them (module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        versions: Callable[[Collection[uuid.UUID]], dict[uuid.UUID, int]],
        recheck_s: float = 3.0,
        sharded: bool = False,
    ) -> None:
        """``sharded``: the client is a Redis Cluster's; notifications then go by sharded
        pub/sub (``SPUBLISH`` / ``SSUBSCRIBE``, Redis 7), which keeps a message on its
        channel's shard instead of broadcasting it to every node, and redis-py's cluster
        pub/sub follows each channel to the node that owns its slot."""
        self._client = client
        self._sharded = sharded
        self._versions = versions
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._waiters: dict[uuid.UUID, set[_Waiter]] = {}
        self._latest: dict[uuid.UUID, int] = {}  # newest version seen of each watched org
        self._listener: threading.Thread | None = None
        self._closed = False
        self.wakeups = 0  # waiters woken (a test and the bench read it)

    # --- the write side ---------------------------------------------------------------------

    def notice(self, org_id: uuid.UUID) -> tuple[str, str]:
        """How an org's new version is announced: the publishing command and the channel
        (``facets.counts.cache.CounterCache``'s ``announce``; a lost notice only delays)."""
        return ("SPUBLISH" if self._sharded else "PUBLISH"), channel(org_id)

    # --- the waiting side -------------------------------------------------------------------

    @contextmanager
    def watching(self, org_id: uuid.UUID) -> Iterator[Callable[[int, float], bool]]:
        """Register a waiting read of ``org_id`` for the block; gives ``wait(version, s)``.

        ``wait`` returns True as soon as the org is known to be past ``version`` (maybe
        already), False when ``s`` seconds passed first. Register before reading the view, so
        a commit between the read and the wait is not missed.
        """
        waiter = _Waiter()
        with self._lock:
            self._waiters.setdefault(org_id, set()).add(waiter)
            self._ensure_listener()
        WAITING_READS.inc()

        def wait(version: int, timeout_s: float) -> bool:
            with self._lock:
                waiter.version = version
                if self._latest.get(org_id, -1) > version:  # moved on while it was reading
                    self._woke()
                    return True
                waiter.event.clear()
            return waiter.event.wait(timeout_s)

        try:
            yield wait
        finally:
            WAITING_READS.dec()
            with self._lock:
                waiters = self._waiters[org_id]
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[org_id]
                    self._latest.pop(org_id, None)

    def waiting(self) -> int:
        """How many reads wait now."""
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    def saw(self, org_id: uuid.UUID, version: int, exact: bool = False) -> None:
        """The org is at ``version`` (``exact``: the database said so): wake whoever is behind."""
        with self._lock:
            waiters = self._waiters.get(org_id)
            if waiters is None:
                return
            latest = self._latest.get(org_id, -1)
            self._latest[org_id] = version if exact else max(latest, version)
            for waiter in waiters:
                if waiter.version < version and not waiter.event.is_set():
                    waiter.event.set()
                    self._woke()

    def _woke(self) -> None:
        """Count a waiter woken (or kept from sleeping) by a version newer than its answer's;
        under ``_lock``."""
        self.wakeups += 1
        WATCH_WAKEUPS.inc()

    # --- the listener -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the listener (an app's end: tests build many); waits end at their time."""
        with self._lock:
            self._closed = True
            listener = self._listener
        if listener is not None:
            listener.join(timeout=5)

    def _ensure_listener(self) -> None:
        if self._closed:
            return
        if self._listener is None or not self._listener.is_alive():
            self._listener = threading.Thread(target=self._listen, name="facets-watch", daemon=True)
            self._listener.start()

    def _watched(self) -> set[uuid.UUID]:
        with self._lock:
            return set(self._waiters)

    def _listen(self) -> None:
        """Subscribe to the watched orgs, wake on messages, recheck the database; exit idle."""
        pubsub = None
        subscribed: set[uuid.UUID] = set()
        confirmed: set[uuid.UUID] = set()  # subscriptions whose orgs need one database read
        next_recheck = time.monotonic() + self.recheck_s
        idle_since: float | None = None
        while not self._closed:
            watched = self._watched()
            now = time.monotonic()
            if not watched:
                idle_since = idle_since or now
                with self._lock:
                    if now - idle_since >= LINGER_S and not self._waiters:
                        self._listener = None
                        break
            else:
                idle_since = None
            try:
                if pubsub is None:
                    pubsub = self._client.pubsub()
                    subscribed = set()
                self._sync(pubsub, subscribed, watched)
                if subscribed:
                    message = self._next_message(pubsub, LISTEN_TICK_S)
                    while message is not None:
                        self._handle(message, confirmed)
                        message = self._next_message(pubsub, 0)
                else:
                    time.sleep(LISTEN_TICK_S)
            except redis.RedisError as exc:
                log.warning("watch: pub/sub failed (%s); rechecking the database", exc)
                if pubsub is not None:
                    pubsub.reset()
                pubsub = None
                confirmed |= watched
                time.sleep(LISTEN_TICK_S)
            now = time.monotonic()
            if now >= next_recheck:
                confirmed |= watched
                next_recheck = now + self.recheck_s
            if confirmed and not self._closed:
                self._recheck(confirmed & self._watched())
                confirmed = set()
        if pubsub is not None:
            pubsub.close()

    def _next_message(self, pubsub, timeout_s: float) -> dict | None:
        if self._sharded:
            return pubsub.get_sharded_message(timeout=timeout_s)
        return pubsub.get_message(timeout=timeout_s)

    def _sync(self, pubsub, subscribed: set[uuid.UUID], watched: set[uuid.UUID]) -> None:
        """(Un)subscribe so that the connection listens to exactly the watched orgs."""
        new, gone = watched - subscribed, subscribed - watched
        subscribe = pubsub.ssubscribe if self._sharded else pubsub.subscribe
        unsubscribe = pubsub.sunsubscribe if self._sharded else pubsub.unsubscribe
        if new:
            subscribe(*map(channel, new))
            subscribed |= new
        if gone:
            unsubscribe(*map(channel, gone))
            subscribed -= gone

    def _handle(self, message: dict, confirmed: set[uuid.UUID]) -> None:
        kind = message.get("type")
        org_id = org_of(str(message.get("channel")))
        if org_id is None:
            return
        if kind in ("subscribe", "ssubscribe"):
            confirmed.add(org_id)  # what committed before the subscription: read it
        elif kind in ("message", "smessage"):
            try:
                self.saw(org_id, int(message["data"]))
            except (TypeError, ValueError):
                log.warning("watch: a malformed version on %s", message.get("channel"))

    def _recheck(self, org_ids: set[uuid.UUID]) -> None:
        if not org_ids:
            return
        try:
            versions = self._versions(org_ids)
        except Exception as exc:  # the database is down: the waits run out, nothing is wrong
            log.warning("watch: cannot recheck versions (%s)", type(exc).__name__)
            return
        for org_id, version in versions.items():
            self.saw(org_id, version, exact=True)
