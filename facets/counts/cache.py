"""The Redis counter cache of each org's facet cells, and why it is never wrong.

Per org, in one Redis Cluster slot (hash tag ``{<org id>}``; every script and read here
names the keys of one org only, so each runs on one node of a cluster):

- ``cells``: field ``<state>:<project id or ->`` → sandbox count, plus ``v``;
- ``totals``: roll-ups ``s:<state>`` and ``p:<project id>`` of the same cells, plus ``v``;
- ``pending``: field ``<version>`` → the deltas of a commit that arrived before its turn;
- ``lease``: who is recounting the org right now.

Zero counts are deleted, so both hashes hold only non-empty buckets.

Invariant: if ``cells`` exists with ``v = x``, then ``cells`` and ``totals`` equal the SQL
recount of the org right after commit ``x``. Why it holds:

1. The unit of work bumps the org's ``facet_version`` by one in the same transaction as every
   change, under the org row lock, and records each change from the rows as they were under
   that lock. So version ``x`` names exactly one commit, versions are gap-free and in commit
   order, and the deltas of ``x`` are exactly ``counts(x) - counts(x - 1)``.
2. A hash is created only by ``install`` (``INSTALL_LUA``), from a recount that read the
   version and the GROUP BY in one snapshot: it is ``counts(V)`` labelled ``V``. A read's
   install does not replace a hash labelled higher than ``V`` (a late recount does not undo
   newer increments, which would only make the cache fall behind); replacing an equal label
   is harmless, as both are ``counts(V)``. Replacing a higher label (the admin rebuild, or a
   label SQL has not reached, which only a restored database can leave) is safe for the
   same reason: the result is exact for its own label.
3. A hash changes otherwise only in ``APPLY_LUA``, which applies the deltas of version
   ``x + 1`` to a hash at ``x`` and relabels it ``x + 1``. Deltas for a version at or below the
   label are ignored (repeats, stragglers after an install); deltas from the future wait in
   ``pending`` and are applied, in order, once their predecessor lands (reordering). With no
   hash, nothing is created: the deltas wait in ``pending`` for an install, so an increment
   can never make a partial hash that looks warm. The two hashes are one unit: if either is
   missing or their labels differ (a ``maxmemory`` policy may evict one key alone), both are
   dropped and the deltas wait, as with no hash.
4. Both scripts run atomically in Redis, so readers never see a half-applied step. A count
   that would go negative proves a broken premise; the script then deletes the hashes so the
   next read recounts instead of serving it.

A read gets the org version ``a`` in the same snapshot that resolves the caller's access and
serves from Redis only if the hash is labelled exactly ``a``: by the invariant the answer is
the SQL count at that snapshot, which includes every commit the caller saw. Anything else
(no hash, a lost update, Redis flushed or down) makes the read recount from SQL; one reader
per org holds the lease and installs, the others wait briefly or recount without installing.
A Redis error is logged and counted, and only ever makes the answer come from SQL.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis

from facets.counts.scripts import APPLY_LUA, INSTALL_LUA, RELEASE_LUA, SNAPSHOT_LUA
from facets.ops.metrics import CACHE_INSTALLS, CACHE_UPDATES, LEASE_WAITS, REDIS_ERRORS
from models.errors import Timeout
from models.events import NO_PROJECT, Cell, encode_cells, net_deltas
from models.recount import Recount
from models.uow import OrgCommit

log = logging.getLogger(__name__)

T = TypeVar("T")

LEASE_POLL_S = 0.005
VERSION_FIELD = "v"

# In Redis and on the read path a cell's project is its canonical id string (None: no project):
# parsing thousands of UUIDs per request would cost more than the rest of a warm read.
KeyedCell = tuple[str, str | None]


def cell_field(state: str, project_id: uuid.UUID | str | None) -> str:
    """The ``cells`` field of a (state, project) cell."""
    return f"{state}:{project_id or NO_PROJECT}"


def parse_cell_field(field: str) -> KeyedCell:
    """The (state, project id string) cell of a ``cells`` field."""
    state, _, project = field.partition(":")
    return state, None if project == NO_PROJECT else project


def keyed_cells(cells: dict[Cell, int]) -> dict[KeyedCell, int]:
    """Recounted cells keyed as the cache keys them."""
    return {(state, str(p) if p is not None else None): n for (state, p), n in cells.items()}


@dataclass(frozen=True)
class Totals:
    """The per-state and per-project roll-ups of a warm org."""

    version: int
    by_state: dict[str, int]
    by_project: dict[str, int]


@dataclass(frozen=True)
class CachedCells:
    version: int
    cells: dict[KeyedCell, int]


def _pairs(flat: list[str]) -> dict[str, str]:
    """A hash from a script's flat ``HGETALL`` reply."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _parse_cells(raw: dict[str, str]) -> CachedCells | None:
    version = raw.pop(VERSION_FIELD, None)
    if version is None:
        return None
    return CachedCells(int(version), {parse_cell_field(f): int(n) for f, n in raw.items()})


def _parse_totals(raw: dict[str, str]) -> Totals | None:
    version = raw.pop(VERSION_FIELD, None)
    if version is None:
        return None
    by_state: dict[str, int] = {}
    by_project: dict[str, int] = {}
    for field, count in raw.items():
        if field[0] == "s":
            by_state[field[2:]] = int(count)
        else:
            by_project[field[2:]] = int(count)
    return Totals(int(version), by_state, by_project)


def rollup(cells: dict[KeyedCell, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Per-state and per-project totals of cells, zeros omitted (what ``totals`` holds)."""
    by_state: dict[str, int] = {}
    by_project: dict[str, int] = {}
    for (state, project), n in cells.items():
        by_state[state] = by_state.get(state, 0) + n
        if project is not None:
            by_project[project] = by_project.get(project, 0) + n
    return (
        {k: v for k, v in by_state.items() if v},
        {k: v for k, v in by_project.items() if v},
    )


class CounterCache:
    """Reads and writes of the per-org facet hashes.

    Writes (``apply``, ``install``, ``release_lease``) absorb Redis errors themselves; reads and
    ``acquire_lease`` raise them so the read path can tell "cold" from "unreachable".
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_ms: int = 7 * 24 * 3600 * 1000,
        pending_ttl_ms: int = 10 * 60 * 1000,
        max_pending: int = 10_000,
        lease_ms: int = 10_000,
        announce: Callable[[uuid.UUID], tuple[str, str]] | None = None,
    ) -> None:
        """``announce``: an org's version notice, ``(command, channel)``
        (``facets.counts.watch.Watchers.notice``), sent by the same script that applies a
        commit: one round trip per commit for both."""
        self.redis = client
        self.announce = announce
        self.ttl_ms = ttl_ms
        self.pending_ttl_ms = pending_ttl_ms
        self.max_pending = max_pending
        self.lease_ms = lease_ms
        self._apply = client.register_script(APPLY_LUA)
        self._install = client.register_script(INSTALL_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._snapshot = client.register_script(SNAPSHOT_LUA)

    @staticmethod
    def keys(org_id: uuid.UUID) -> tuple[str, str, str]:
        """The cells, totals and pending keys of an org (one cluster slot)."""
        tag = f"facets:{{{org_id}}}"
        return f"{tag}:cells", f"{tag}:totals", f"{tag}:pending"

    @staticmethod
    def lease_key(org_id: uuid.UUID) -> str:
        return f"facets:{{{org_id}}}:lease"

    def absorb(self, op: str, exc: redis.RedisError) -> None:
        """Log and count a Redis error that the caller answers around."""
        REDIS_ERRORS.labels(op=op).inc()
        log.warning("redis %s failed, answering from SQL: %s", op, type(exc).__name__)

    def after_commit(self, commits: Sequence[OrgCommit]) -> None:
        """The unit of work's hook: send each org's committed deltas, labelled with its version
        (and, with ``announce``, the version notice that wakes the org's waiting reads)."""
        for commit in commits:
            self.apply(commit.org_id, commit.version, net_deltas(list(commit.events)))

    def apply(self, org_id: uuid.UUID, version: int, deltas: dict[Cell, int]) -> str:
        """Apply one commit's deltas and send its version notice (see ``APPLY_LUA``); returns
        the outcome."""
        notice = self.announce(org_id) if self.announce is not None else ("", "")
        try:
            result = self._apply(
                keys=self.keys(org_id),
                args=[
                    version,
                    encode_cells(deltas.items()),
                    self.ttl_ms,
                    self.pending_ttl_ms,
                    self.max_pending,
                    *notice,
                ],
            )
        except redis.RedisError as exc:
            self.absorb("apply", exc)
            result = "error"
        CACHE_UPDATES.labels(result=result).inc()
        if result == "corrupt":
            log.error("facet cache of org %s went negative; dropped it for a recount", org_id)
        return result

    def install(
        self,
        org_id: uuid.UUID,
        recount: Recount,
        *,
        force: bool = False,
        sql_version: Callable[[], int] | None = None,
    ) -> str:
        """Offer a recount to Redis (see ``INSTALL_LUA``); returns the outcome.

        A hash labelled newer than the recount is kept, unless ``force`` (the admin rebuild)
        or unless it is labelled ahead of ``sql_version()``, read after the install saw it:
        a live label is written only after its commit, so a label SQL has not reached can
        only come from a database restored to an earlier point. Replacing a hash by an
        older recount is always safe (it is exact for its own label, merely behind).
        """
        result = self._run_install(org_id, recount, force)
        if result.startswith("kept:") and sql_version is not None:
            if int(result.partition(":")[2]) > sql_version():
                log.error("facet cache of org %s is labelled ahead of SQL; replacing it", org_id)
                result = self._run_install(org_id, recount, force=True)
        result = result.partition(":")[0]
        CACHE_INSTALLS.labels(result=result).inc()
        return result

    def install_args(self, version: int, words: str, force: bool) -> list:
        """``INSTALL_LUA``'s ARGV for a recount at ``version`` of cells ``words``
        (``models.events.encode_cells``); its KEYS are ``keys(org_id)``."""
        return [version, words, self.ttl_ms, int(force)]

    def _run_install(self, org_id: uuid.UUID, recount: Recount, force: bool) -> str:
        try:
            args = self.install_args(recount.version, encode_cells(recount.cells.items()), force)
            return self._install(keys=self.keys(org_id), args=args)
        except redis.RedisError as exc:
            self.absorb("install", exc)
            return "error"

    def read_totals(self, org_id: uuid.UUID) -> Totals | None:
        """The roll-ups of the whole org, or None when cold.

        :raise redis.RedisError: Redis is unreachable.
        """
        return _parse_totals(self.redis.hgetall(self.keys(org_id)[1]))

    def read_cells(self, org_id: uuid.UUID, fields: Sequence[str] | None) -> CachedCells | None:
        """The given cells (None: all of them), or None when cold.

        :raise redis.RedisError: Redis is unreachable.
        """
        key = self.keys(org_id)[0]
        if fields is None:
            return _parse_cells(self.redis.hgetall(key))
        values = self.redis.hmget(key, [VERSION_FIELD, *fields])
        return _parse_cells(
            {f: v for f, v in zip([VERSION_FIELD, *fields], values, strict=True) if v is not None}
        )

    def snapshot(self, org_id: uuid.UUID) -> tuple[CachedCells | None, Totals | None]:
        """Both hashes of an org read atomically (for verify and rebuild; raises RedisError)."""
        raw_cells, raw_totals = self._snapshot(keys=self.keys(org_id)[:2])
        return _parse_cells(_pairs(raw_cells)), _parse_totals(_pairs(raw_totals))

    def acquire_lease(self, org_id: uuid.UUID) -> str | None:
        """A token if this caller may recount and install the org, ``None`` if another holds it.

        :raise redis.RedisError: Redis is unreachable (nobody can install: just recount).
        """
        token = secrets.token_hex(8)
        key = self.lease_key(org_id)
        if self.redis.set(key, token, nx=True, px=self.lease_ms):
            return token
        # The client retries a command whose reply was lost: the first SET may have taken the
        # lease, and then the retry finds our own token there.
        return token if self.redis.get(key) == token else None

    def release_lease(self, org_id: uuid.UUID, token: str) -> None:
        """Give the lease back if it is still ours."""
        try:
            self._release(keys=[self.lease_key(org_id)], args=[token])
        except redis.RedisError as exc:
            self.absorb("lease", exc)

    def recount_once(
        self,
        org_id: uuid.UUID,
        version: int,
        lookup: Callable[[], tuple[int | None, T | None]],
        recount: Callable[[bool], T],
        wait_s: float,
    ) -> T:
        """The cold path of a read at ``version``: recount under the org's lease, or wait for
        the lease holder's install.

        ``lookup()`` reads the hash: its label and the view's counts if labelled ``version``
        (it may raise ``redis.RedisError``); ``recount(install)`` counts in SQL, installing
        the result when asked. Only one reader per org recounts and installs; the others poll
        for as long as a recount may take (``wait_s``). A waiter that sees a newer label
        recounts itself (the hash will not come back at its version); one that sees an older
        label takes the lease as soon as it is free (its holder installed an older count); one
        still waiting at the deadline takes the lease if it was freed, else gives up.

        :raise Timeout: neither this reader's recount nor the lease holder's finished in time.
        """
        try:
            token = self.acquire_lease(org_id)
            if token is not None:
                return self._recount_under_lease(org_id, token, lookup, recount)
            LEASE_WAITS.inc()
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                time.sleep(LEASE_POLL_S)
                label, counts = lookup()
                if counts is not None:
                    return counts
                if label is not None and label > version:
                    return recount(False)
                if label is not None and label < version:
                    # The holder installed an older count (an update was lost) and may have
                    # let go: nobody is counting this version, so take the lease if it is free.
                    token = self.acquire_lease(org_id)
                    if token is not None:
                        return self._recount_under_lease(org_id, token, lookup, recount)
            token = self.acquire_lease(org_id)
        except redis.RedisError as exc:
            self.absorb("lease", exc)
            return recount(False)
        if token is None:
            raise Timeout(
                "Another request is still counting this organization's sandboxes; retry shortly."
            )
        return self._recount_under_lease(org_id, token, lookup, recount)

    def _recount_under_lease(
        self,
        org_id: uuid.UUID,
        token: str,
        lookup: Callable[[], tuple[int | None, T | None]],
        recount: Callable[[bool], T],
    ) -> T:
        """Recount and install while holding the lease, then give it back.

        The hash is looked up once more first: a reader that missed it just before the previous
        lease holder installed it and let go would otherwise recount the same version again.
        A Redis error in that look-up is absorbed, and the reader recounts.
        """
        try:
            try:
                counts = lookup()[1]
            except redis.RedisError as exc:
                self.absorb("read", exc)
                counts = None
            return counts if counts is not None else recount(True)
        finally:
            self.release_lease(org_id, token)
