"""Per-caller rate limits: 429 ``usage_limit_exceeded_error`` on the facets and on mutations.

The caller is the API key (its public prefix) or the JWT subject, each only once the credential
checks out; anything else is counted by client address, and such requests get 401 anyway. A
forged credential therefore cannot spend someone else's budget.

``FACETS_RATE_LIMIT`` applies to ``GET .../sandboxes/facets``; ``MUTATION_RATE_LIMIT`` is one
budget shared by every POST/PATCH/DELETE of the API blueprint. Health probes, ``/metrics``, the
docs and CORS preflights are never limited. ``RATE_LIMITS_ENABLED`` switches them; unset, they
are on except in a TESTING app.

Windows are fixed and start at their first hit (``limits``' fixed-window strategy; the limit
strings are parsed by ``limits``). The counters live in the app's Redis (so workers share
them; with the embedded ``fakeredis://`` they live in the process) and all windows of a budget
are counted *and read back* by one Lua call: a limited request costs one Redis round trip, and
the ``RateLimit-*`` headers come with it. A GET does not wait for that round trip: the script
is sent, the view runs meanwhile (it only reads), and the reply then decides between the
view's answer and the 429. When Redis fails the limiter fails open onto per-process memory
counters (logged, and counted as ``facets_redis_errors_total{op="rate_limit"}``) and tries
Redis again after ``REDIS_RETRY_S``.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage

from flask import Flask, Response, request

from facets.edge.auth import READ_METHODS, AuthenticationError, authenticate
from facets.errors import HTTPError
from facets.ops.metrics import RATE_LIMITED, REDIS_ERRORS

log = logging.getLogger(__name__)

FACETS_ENDPOINT = "sandboxes.get_sandbox_facets"
MUTATING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
REDIS_RETRY_S = 1.0
WINDOWS_KEY = "facets.rate_limit_windows"

# KEYS: one counter per window; ARGV: each window's length in seconds. Returns, per window,
# its count after this hit and the seconds until it resets.
WINDOWS_SCRIPT = """
local out = {}
for i = 1, #KEYS do
  local count = redis.call('INCR', KEYS[i])
  local ttl = redis.call('TTL', KEYS[i])
  if ttl < 0 then
    redis.call('EXPIRE', KEYS[i], ARGV[i])
    ttl = tonumber(ARGV[i])
  end
  out[2 * i - 1] = count
  out[2 * i] = ttl
end
return out
"""


class RateLimited(HTTPError):
    status = 429
    type = "usage_limit_exceeded_error"


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
    def expiries(self) -> list[int]:
        """Each window's length in seconds (the script's ARGV), worked out once per budget."""
        return [item.get_expiry() for item in self.items]

    def keys(self, caller: str) -> list[str]:
        # One hash tag per caller and budget: a cluster keeps the script's keys on one slot.
        return [
            f"LIMITS:{{{self.name}:{caller}}}:{item.amount}/{item.multiples}/"
            f"{item.GRANULARITY.name}"
            for item in self.items
        ]


@dataclass(frozen=True)
class Window:
    """One window after a hit: its limit, how many hits it has seen, when it resets."""

    amount: int
    count: int
    reset_in: int  # seconds

    @property
    def remaining(self) -> int:
        return max(0, self.amount - self.count)

    @property
    def breached(self) -> bool:
        return self.count > self.amount


def window_to_report(windows: list[Window]) -> Window:
    """The window the headers describe: the breached one that resets last, else the tightest."""
    breached = [w for w in windows if w.breached]
    if breached:
        return max(breached, key=lambda w: w.reset_in)
    return min(windows, key=lambda w: (w.remaining, -w.reset_in))


class PendingHit:
    """A hit sent to Redis, its reply read when the request needs it (``windows``).

    Until then the request goes on, so the Redis round trip overlaps the request's own work.
    The reply is read once, by the first call of ``windows``, and the connection goes back to
    its pool then.
    """

    def __init__(self, limiter: RateLimiter, budget: Budget, keys: list[str]) -> None:
        self.limiter = limiter
        self.budget = budget
        self.keys = keys
        self.sent_on: tuple[redis.ConnectionPool, redis.Connection] | None = None
        self._windows: list[Window] | None = None

    def windows(self) -> list[Window]:
        """Every window of the budget after this hit (Redis's count, else process memory's)."""
        if self._windows is None:
            self._windows = self.limiter.receive(self)
        return self._windows


class RateLimiter:
    """Counts hits of budgets per caller in Redis, or in process memory while Redis is down."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(WINDOWS_SCRIPT)
        self._memory = MemoryStorage()
        self._lock = threading.Lock()
        self._dead = False
        self._retry_at = 0.0

    def send(self, budget: Budget, caller: str) -> PendingHit:
        """Count one hit for ``caller`` without waiting for Redis's answer.

        The script goes out now on a pooled connection; ``PendingHit.windows`` reads the reply.
        A hit that cannot be sent is left to ``receive``, which retries as the client does.
        """
        pending = PendingHit(self, budget, budget.keys(caller))
        if self._resting():
            return pending
        pool = self._client.connection_pool
        try:
            connection = pool.get_connection()
        except redis.RedisError:
            return pending
        try:
            connection.send_command(
                "EVALSHA", self._script.sha, len(pending.keys), *pending.keys, *budget.expiries
            )
        except redis.RedisError:
            connection.disconnect()
            pool.release(connection)
            return pending
        pending.sent_on = (pool, connection)
        return pending

    def receive(self, pending: PendingHit) -> list[Window]:
        """The windows ``pending`` counted: the sent script's reply, else a call of the script
        through the client (which loads it and retries), else process memory's count."""
        budget, keys = pending.budget, pending.keys
        flat = None
        if pending.sent_on is not None:
            pool, connection = pending.sent_on
            pending.sent_on = None
            try:
                flat = connection.read_response()  # disconnects itself on a socket error
            except redis.RedisError:
                pass  # NOSCRIPT (a flushed or restarted Redis) ran nothing; a lost reply is retried
            finally:
                pool.release(connection)
        if flat is None:
            if self._resting():
                return self._hit_in_memory(budget, keys)
            try:
                flat = self._script(keys=keys, args=budget.expiries)
            except redis.RedisError as error:
                self._went_dead(error)
                return self._hit_in_memory(budget, keys)
        self._came_back()
        return [
            Window(item.amount, int(flat[2 * i]), int(flat[2 * i + 1]))
            for i, item in enumerate(budget.items)
        ]

    def _resting(self) -> bool:
        """Redis is down and not yet due for another try."""
        return self._dead and time.monotonic() < self._retry_at

    def _hit_in_memory(self, budget: Budget, keys: list[str]) -> list[Window]:
        now = time.time()
        windows = []
        for key, item in zip(keys, budget.items, strict=True):
            count = self._memory.incr(key, item.get_expiry())
            reset_in = math.ceil(max(0.0, self._memory.get_expiry(key) - now))
            windows.append(Window(item.amount, count, reset_in))
        return windows

    def _went_dead(self, error: redis.RedisError) -> None:
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


def caller_key() -> str:
    """The rate-limit identity of the request: ``key:<prefix>``, ``user:<sub>`` or ``ip:<addr>``.

    It comes from ``facets.edge.auth.authenticate`` (which runs once per request, however often it
    is asked); a credential that does not authenticate is no identity.
    """
    return _verified_caller() or f"ip:{request.remote_addr or '-'}"


def _verified_caller() -> str | None:
    try:
        principal = authenticate()
    except AuthenticationError:
        return None
    except Exception as error:  # the database is down: the view will answer for it
        log.warning("rate limit: cannot check a credential (%s)", type(error).__name__)
        return None
    return f"{principal.via}:{principal.credential_id}"


def limited(limiter: RateLimiter, budget: Budget, methods: tuple[str, ...] | None, view):
    """``view``, refused with 429 once the caller has spent ``budget`` (for ``methods`` only).

    A read's view runs while Redis counts the hit: it changes nothing, so the response of a
    caller found over the limit is dropped, and the 429 still wins over any error of the view.
    A mutation, and a read that may wait, waits for the count before its view runs.
    """

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if methods is not None and request.method not in methods:
            return view(*args, **kwargs)
        pending = limiter.send(budget, caller_key())
        # A waiting read (``?wait=``) is counted once, here, and does not keep the pooled
        # connection of its hit while it waits.
        if request.method not in READ_METHODS or "wait" in request.args:
            refuse_if_spent(budget, pending.windows())
            return view(*args, **kwargs)
        try:
            response = view(*args, **kwargs)
        finally:
            # Always read the reply (the connection goes back to the pool clean); a 429
            # raised here replaces whatever the view raised.
            refuse_if_spent(budget, pending.windows())
        return response

    return wrapper


def refuse_if_spent(budget: Budget, windows: list[Window]) -> None:
    """Keep the windows for the headers; raise the 429 if any of them is spent."""
    request.environ[WINDOWS_KEY] = windows
    if any(w.breached for w in windows):
        RATE_LIMITED.labels(limit=budget.name).inc()
        raise RateLimited(budget.message)


def add_rate_limit_headers(response: Response) -> Response:
    """``RateLimit-Limit/-Remaining/-Reset`` (seconds from now) of the window that applied.

    ``Retry-After`` only on a 429: on other responses it would be meaningless, or would
    overwrite one that means something else (a 504's).
    """
    windows = request.environ.get(WINDOWS_KEY)
    if not windows:
        return response
    window = window_to_report(windows)
    response.headers["RateLimit-Limit"] = str(window.amount)
    response.headers["RateLimit-Remaining"] = str(window.remaining)
    response.headers["RateLimit-Reset"] = str(window.reset_in)
    if response.status_code == 429:
        response.headers["Retry-After"] = str(window.reset_in)
    return response


def init_app(app: Flask, blueprint: str) -> None:
    """Limit the facets endpoint and mutations of the API blueprint named ``blueprint``; call
    after it is registered."""
    enabled = app.config.get("RATE_LIMITS_ENABLED")
    if enabled is None:
        enabled = not app.testing
    if not enabled:
        return
    from facets.extensions import state

    with app.app_context():
        limiter = RateLimiter(state().redis)
    app.extensions["facets_limiter"] = limiter
    app.after_request(add_rate_limit_headers)

    facets_budget = Budget.parse("facets", "facets", app.config["FACETS_RATE_LIMIT"])
    mutation_budget = Budget.parse("mutations", "write", app.config["MUTATION_RATE_LIMIT"])
    for endpoint in {rule.endpoint for rule in app.url_map.iter_rules()}:
        if not endpoint.startswith(f"{blueprint}."):
            continue
        methods = set().union(*(rule.methods or () for rule in app.url_map.iter_rules(endpoint)))
        if endpoint == FACETS_ENDPOINT:
            budget, only = facets_budget, None
        elif methods & set(MUTATING_METHODS):
            budget, only = mutation_budget, MUTATING_METHODS
        else:
            continue
        # The limit runs when the view is called: after the version gate, before login.
        app.view_functions[endpoint] = limited(limiter, budget, only, app.view_functions[endpoint])
