"""Rate-limit windows: counted in Redis by one Lua call, else in process memory.

A hit *passes* only if every window of its budget (``facets.edge.budgets``) has room, and then
counts in every window; a refused hit counts in none, so a caller retrying as fast as it can
loses nothing by it and gets its next request through the moment the spent windows reset
(``Count.reported``).

The check and the hit are one Lua script over all of a caller's windows, so one request costs
one Redis round trip. It can be sent before the request's view runs and read after
(``PendingHit``). The keys of one caller share a hash tag (``{user:<id>}``), so on a Redis
Cluster they live in one slot and the script is legal there; the script then goes to the
primary that serves that slot, and anything unusual (a moved slot, an unloaded script, a lost
reply) is retried through the client, which knows how.

When Redis fails the windows are counted in per-process memory instead (logged, and counted as
``facets_redis_errors_total{op="rate_limit"}``), and Redis is tried again after
``REDIS_RETRY_S``.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from limits.storage import MemoryStorage
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from facets.edge.budgets import Budget, Count, Window, seconds
from facets.ops.metrics import REDIS_ERRORS
from facets.redis_cluster import LazyCluster

log = logging.getLogger(__name__)

REDIS_RETRY_S = 1.0
# What a standalone or cluster client raises when it cannot count (RedisClusterException, such
# as an uncovered slot, is not a RedisError).
STORAGE_ERRORS = (redis.RedisError, RedisClusterException)

# KEYS: one counter per window; ARGV: each window's limit, then each window's length in ms.
# Returns 1 (passed: every window counted this hit) or 0 (refused: none did), then per window
# its count and the milliseconds until it resets. The hit is counted first and taken back
# from every window if one of them had no room: atomic, so the same as checking first, and a
# passing hit (the common case) costs what a bare count does. A counter found without an
# expiry gets one, so that no window can refuse forever.
WINDOWS_SCRIPT = """
local n = #KEYS
local passed = 1
local counts, resets = {}, {}
for i = 1, n do
  local length = tonumber(ARGV[n + i])
  counts[i] = redis.call('INCR', KEYS[i])
  resets[i] = counts[i] == 1 and -1 or redis.call('PTTL', KEYS[i])
  if resets[i] < 0 then
    redis.call('PEXPIRE', KEYS[i], length)
    resets[i] = length
  end
  if counts[i] > tonumber(ARGV[i]) then
    passed = 0
  end
end
local out = {passed}
for i = 1, n do
  if passed == 0 then
    if counts[i] == 1 then
      redis.call('DEL', KEYS[i])
      counts[i] = 0
    else
      counts[i] = redis.call('DECR', KEYS[i])
    end
  end
  out[2 * i] = counts[i]
  out[2 * i + 1] = resets[i]
end
return out
"""


class PendingHit:
    """A hit sent to Redis, its reply read when the request needs it (``count``).

    Until then the request goes on, so the Redis round trip overlaps the request's own work.
    The reply is read once, by the first call of ``count``, and the connection goes back to
    its pool then.
    """

    def __init__(self, limiter: RateLimiter, budget: Budget, keys: list[str]) -> None:
        self.limiter = limiter
        self.budget = budget
        self.keys = keys
        self.sent_on: tuple[redis.ConnectionPool, redis.Connection] | None = None
        self._count: Count | None = None

    def count(self) -> Count:
        """The hit's outcome (Redis's count, else process memory's)."""
        if self._count is None:
            self._count = self.limiter.receive(self)
        return self._count


class RateLimiter:
    """Counts hits of budgets per caller in Redis, or in process memory while Redis is down."""

    def __init__(self, client: redis.Redis | RedisCluster | LazyCluster) -> None:
        self._client = client
        self._script = client.register_script(WINDOWS_SCRIPT)
        self._memory = MemoryStorage()
        self._memory_lock = threading.Lock()
        self._lock = threading.Lock()
        self._dead = False
        self._retry_at = 0.0

    def _pool(self, key: str) -> redis.ConnectionPool:
        """The pool of connections to the server that holds ``key``: the client's own, or on a
        cluster the pool of the primary serving the key's slot (as the client last knew it)."""
        client = self._client
        if isinstance(client, RedisCluster | LazyCluster):
            return client.get_redis_connection(client.get_node_from_key(key)).connection_pool
        return client.connection_pool

    def send(self, budget: Budget, caller: str) -> PendingHit:
        """Count one hit for ``caller`` without waiting for Redis's answer.

        The script goes out now on a pooled connection; ``PendingHit.count`` reads the reply.
        A hit that cannot be sent is left to ``receive``, which retries as the client does.
        """
        pending = PendingHit(self, budget, budget.keys(caller))
        if self._resting():
            return pending
        try:
            pool = self._pool(pending.keys[0])
            connection = pool.get_connection()
        except STORAGE_ERRORS:
            return pending
        try:
            connection.send_command(
                "EVALSHA", self._script.sha, len(pending.keys), *pending.keys, *budget.args
            )
        except redis.RedisError:
            connection.disconnect()
            pool.release(connection)
            return pending
        pending.sent_on = (pool, connection)
        return pending

    def receive(self, pending: PendingHit) -> Count:
        """The outcome of ``pending``: the sent script's reply, else a call of the script
        through the client (which loads it, follows a moved slot and retries), else process
        memory's count."""
        budget, keys = pending.budget, pending.keys
        flat = None
        if pending.sent_on is not None:
            pool, connection = pending.sent_on
            pending.sent_on = None
            try:
                flat = connection.read_response()  # disconnects itself on a socket error
            except redis.RedisError:
                # NOSCRIPT (a flushed or restarted Redis) or MOVED (a resharded cluster) ran
                # nothing; a lost reply is retried (that hit may have counted too).
                pass
            finally:
                pool.release(connection)
        if flat is None:
            if self._resting():
                return self._count_in_memory(budget, keys)
            try:
                flat = self._script(keys=keys, args=budget.args)
            except STORAGE_ERRORS as error:
                self._went_dead(error)
                return self._count_in_memory(budget, keys)
        self._came_back()
        return Count(
            bool(flat[0]),
            [
                Window(item.amount, int(flat[2 * i + 1]), seconds(int(flat[2 * i + 2])))
                for i, item in enumerate(budget.items)
            ],
        )

    def _resting(self) -> bool:
        """Redis is down and not yet due for another try."""
        return self._dead and time.monotonic() < self._retry_at

    def _count_in_memory(self, budget: Budget, keys: list[str]) -> Count:
        """The script's check-then-hit, on this process's own counters."""
        pairs = list(zip(keys, budget.items, strict=True))
        with self._memory_lock:
            passed = all(self._memory.get(key) < item.amount for key, item in pairs)
            counts = [
                self._memory.incr(key, item.get_expiry()) if passed else self._memory.get(key)
                for key, item in pairs
            ]
            now = time.time()
            windows = [
                Window(
                    item.amount,
                    count,
                    seconds((self._memory.get_expiry(key) - now) * 1000)
                    if count
                    else item.get_expiry(),
                )
                for (key, item), count in zip(pairs, counts, strict=True)
            ]
        return Count(passed, windows)

    def _went_dead(self, error: Exception) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + REDIS_RETRY_S
            if self._dead:
                return
            self._dead = True
        REDIS_ERRORS.labels(op="rate_limit").inc()
        log.warning(
            "rate limit storage unreachable (%s): counting in process memory for now",
            type(error).__name__,
        )

    def _came_back(self) -> None:
        if not self._dead:
            return
        with self._lock:
            was_dead, self._dead = self._dead, False
        if was_dead:
            log.warning("rate limit storage reachable again")
