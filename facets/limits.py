"""Per-caller rate limits: 429 ``usage_limit_exceeded_error`` on the facets and on mutations.

The caller is the API key (its public prefix) or the JWT subject, each only once the credential
checks out; anything else is counted by client address, and such requests get 401 anyway. A
forged credential therefore cannot spend someone else's budget.

``FACETS_RATE_LIMIT`` applies to ``GET .../sandboxes/facets``; ``MUTATION_RATE_LIMIT`` is one
budget shared by every POST/PATCH/DELETE of the API blueprint. Health probes, ``/metrics``, the
docs and CORS preflights are never limited. Counters live in Redis (``REDIS_URL``) so workers
share them; with the embedded ``fakeredis://`` they live in process memory.
``RATE_LIMITS_ENABLED`` switches them; unset, they are on except in a TESTING app. When Redis
fails the limiter fails open onto per-process memory counters (logged, and counted as
``facets_redis_errors_total{op="rate_limit"}``) and goes back to Redis once it answers again.
"""

from __future__ import annotations

import functools
import logging
import time

from flask_limiter import Limiter, RequestLimit

from flask import Flask, Response, request

from facets.auth import AuthenticationError, authenticate
from facets.config import EMBEDDED_REDIS_URL
from facets.metrics import RATE_LIMITED, REDIS_ERRORS

log = logging.getLogger(__name__)

FACETS_ENDPOINT = "sandboxes.get_sandbox_facets"
MUTATING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
STORAGE_TIMEOUT_S = 0.5


class FacetsLimiter(Limiter):
    """flask-limiter's ``Limiter`` that reports when its storage goes down and comes back.

    flask-limiter flips ``_storage_dead`` when the storage raises (and uses its in-memory
    fallback while it is set); every such flip is logged here and counted.
    """

    @property
    def _storage_dead(self) -> bool:
        return self.__dict__.get("_facets_storage_dead", False)

    @_storage_dead.setter
    def _storage_dead(self, dead: bool) -> None:
        was_dead = self.__dict__.get("_facets_storage_dead", False)
        if dead and not was_dead:
            REDIS_ERRORS.labels(op="rate_limit").inc()
            log.warning("rate limit storage unreachable: counting in process memory for now")
        elif was_dead and not dead:
            log.warning("rate limit storage reachable again")
        self.__dict__["_facets_storage_dead"] = dead


def storage_uri(redis_url: str) -> str:
    """Where the counters live: the app's Redis, or memory for the embedded fakeredis."""
    return "memory://" if redis_url.startswith(EMBEDDED_REDIS_URL) else redis_url


def caller_key() -> str:
    """The rate-limit identity of the request: ``key:<prefix>``, ``user:<sub>`` or ``ip:<addr>``.

    It comes from ``facets.auth.authenticate`` (which runs once per request, however often it
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


def add_rate_limit_headers(limiter: Limiter, response: Response) -> Response:
    """``RateLimit-Limit/-Remaining/-Reset`` (seconds from now) of the limit that applied.

    ``Retry-After`` only on a 429: on other responses it would be meaningless, or would
    overwrite one that means something else (a 504's).
    """
    current = limiter.current_limit
    if current is None:
        return response
    try:
        reset_in = max(0, int(current.reset_at - time.time()))
        remaining = current.remaining
    except Exception as error:  # storage gone since the check; the answer matters more
        log.warning("rate limit headers skipped (%s)", type(error).__name__)
        return response
    response.headers["RateLimit-Limit"] = str(current.limit.amount)
    response.headers["RateLimit-Remaining"] = str(remaining)
    response.headers["RateLimit-Reset"] = str(reset_in)
    if response.status_code == 429:
        response.headers["Retry-After"] = str(reset_in)
    return response


def _counted(limit_name: str):
    def on_breach(_limit: RequestLimit) -> None:
        RATE_LIMITED.labels(limit=limit_name).inc()

    return on_breach


def _breach_message(what: str, limits: str) -> str:
    return (
        f"Too many {what} requests from this caller (limit {limits.replace(';', ', ')}); "
        "retry after the number of seconds in the Retry-After header."
    )


def init_app(app: Flask) -> None:
    """Limit the API blueprint's facets endpoint and mutations; call after it is registered."""
    enabled = app.config.get("RATE_LIMITS_ENABLED")
    if enabled is None:
        enabled = not app.testing
    if not enabled:
        return
    from facets.views import blp

    uri = storage_uri(app.config["REDIS_URL"])
    options = (
        {}
        if uri == "memory://"
        else {"socket_connect_timeout": STORAGE_TIMEOUT_S, "socket_timeout": STORAGE_TIMEOUT_S}
    )

    limiter = FacetsLimiter(
        key_func=caller_key,
        storage_uri=uri,
        storage_options=options,
        strategy="fixed-window",
        key_prefix="facets",
        # flask-limiter would put Retry-After on every response (and overwrite a 504's own);
        # the headers are written below instead.
        headers_enabled=False,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.request_filter(lambda: request.method == "OPTIONS")
    limiter.init_app(app)
    app.extensions["facets_limiter"] = limiter
    app.after_request(functools.partial(add_rate_limit_headers, limiter))

    facets_limit = app.config["FACETS_RATE_LIMIT"]
    mutation_limit = app.config["MUTATION_RATE_LIMIT"]
    limit_facets = limiter.limit(
        facets_limit,
        error_message=_breach_message("facets", facets_limit),
        on_breach=_counted("facets"),
    )
    limit_mutations = limiter.shared_limit(
        mutation_limit,
        scope="mutations",
        methods=list(MUTATING_METHODS),
        error_message=_breach_message("write", mutation_limit),
        on_breach=_counted("mutations"),
    )
    wrapped = set()
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint
        if not endpoint.startswith(f"{blp.name}.") or endpoint in wrapped:
            continue
        if endpoint == FACETS_ENDPOINT:
            decorator = limit_facets
        elif set(rule.methods or ()) & set(MUTATING_METHODS):
            decorator = limit_mutations
        else:
            continue
        # The limit runs when the view is called: after the version gate, before login.
        app.view_functions[endpoint] = decorator(app.view_functions[endpoint])
        wrapped.add(endpoint)
