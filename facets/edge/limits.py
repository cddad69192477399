"""Per-user rate limits on every API endpoint: 429 ``usage_limit_exceeded_error``.

Three budgets per caller: ``FACETS_RATE_LIMIT`` for ``GET .../sandboxes/facets``,
``READ_RATE_LIMIT`` shared by every other GET/HEAD of the API blueprint (the lists), and
``MUTATION_RATE_LIMIT`` shared by every POST/PUT/PATCH/DELETE. Health probes, ``/metrics``, the
docs and CORS preflights are never limited. ``RATE_LIMITS_ENABLED`` switches them; unset, they
are on except in a TESTING app.

The caller is the authenticated *user*, whichever credential they use (their API keys and
JWTs share one budget), and only once the credential checks out; anything else is counted by
client address, and such requests get 401 anyway. A forged credential therefore cannot spend
someone else's budget. The user id comes with the credential check the request makes anyway
(``facets.edge.auth.authenticate``, once per request): no database work of its own.

The windows are counted by ``facets.edge.limit_windows``: one Redis round trip per request, and
a refused request spends nothing. A read does not wait for that round trip: the script is
sent, the view runs meanwhile (it only reads), and the reply then decides between the view's
answer and the 429. A mutation waits for it before its view runs.
"""

from __future__ import annotations

import functools
import logging

from flask import Flask, Response, request

from facets.edge.auth import READ_METHODS, AuthenticationError, authenticate
from facets.edge.budgets import Budget, Count
from facets.edge.limit_windows import RateLimiter
from facets.errors import HTTPError
from facets.ops.metrics import RATE_LIMITED

log = logging.getLogger(__name__)

FACETS_ENDPOINT = "sandboxes.get_sandbox_facets"
MUTATING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
COUNT_KEY = "facets.rate_limit_count"


class RateLimited(HTTPError):
    status = 429
    type = "usage_limit_exceeded_error"


def caller_key() -> str:
    """The rate-limit identity of the request: ``user:<user id>`` or ``ip:<addr>``.

    It comes from ``facets.edge.auth.authenticate`` (which runs once per request, however often it
    is asked); a credential that does not authenticate is no identity.
    """
    return _verified_user() or f"ip:{request.remote_addr or '-'}"


def _verified_user() -> str | None:
    try:
        principal = authenticate()
    except AuthenticationError:
        return None
    except Exception as error:  # the database is down: the view will answer for it
        log.warning("rate limit: cannot check a credential (%s)", type(error).__name__)
        return None
    return f"user:{principal.user_id}"


def limited(limiter: RateLimiter, budgets: dict[str, Budget], view):
    """``view``, refused with 429 once the caller has spent the budget of the request's method
    (methods without one, such as OPTIONS, are not limited).

    A read's view runs while Redis counts the hit: it changes nothing, so the response of a
    caller found over the limit is dropped, and the 429 still wins over any error of the view.
    A mutation, and a read that may wait, waits for the count before its view runs.
    """

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        budget = budgets.get(request.method)
        if budget is None:
            return view(*args, **kwargs)
        pending = limiter.send(budget, caller_key())
        # A waiting read (``?wait=``) is counted once, here, and does not keep the pooled
        # connection of its hit while it waits.
        if request.method not in READ_METHODS or "wait" in request.args:
            refuse_if_spent(budget, pending.count())
            return view(*args, **kwargs)
        try:
            response = view(*args, **kwargs)
        finally:
            # Always read the reply (the connection goes back to the pool clean); a 429
            # raised here replaces whatever the view raised.
            refuse_if_spent(budget, pending.count())
        return response

    return wrapper


def refuse_if_spent(budget: Budget, count: Count) -> None:
    """Keep the count for the headers; raise the 429 if the hit did not pass."""
    request.environ[COUNT_KEY] = count
    if not count.passed:
        RATE_LIMITED.labels(limit=budget.name).inc()
        raise RateLimited(budget.message)


def add_rate_limit_headers(response: Response) -> Response:
    """``RateLimit-Limit/-Remaining/-Reset`` (seconds from now) of the window that applied.

    ``Retry-After`` only on a 429 (the seconds until every spent window has reset, when the
    next request passes): on other responses it would be meaningless, or would overwrite one
    that means something else (a 504's).
    """
    count = request.environ.get(COUNT_KEY)
    if count is None:
        return response
    window = count.reported
    response.headers["RateLimit-Limit"] = str(window.amount)
    response.headers["RateLimit-Remaining"] = str(window.remaining)
    response.headers["RateLimit-Reset"] = str(window.reset_in)
    if response.status_code == 429:
        response.headers["Retry-After"] = str(window.reset_in)
    return response


def init_app(app: Flask, blueprint: str) -> None:
    """Limit every endpoint of the API blueprint named ``blueprint``; call after it is
    registered."""
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

    config = app.config
    facets_budget = Budget.parse("facets", "facets", config["FACETS_RATE_LIMIT"])
    read_budget = Budget.parse("reads", "read", config["READ_RATE_LIMIT"])
    mutation_budget = Budget.parse("mutations", "write", config["MUTATION_RATE_LIMIT"])
    writes = dict.fromkeys(MUTATING_METHODS, mutation_budget)
    for endpoint in {rule.endpoint for rule in app.url_map.iter_rules()}:
        if not endpoint.startswith(f"{blueprint}."):
            continue
        reads = facets_budget if endpoint == FACETS_ENDPOINT else read_budget
        budgets = {**dict.fromkeys(READ_METHODS, reads), **writes}
        # The limit runs when the view is called: after the version gate, before login.
        app.view_functions[endpoint] = limited(limiter, budgets, app.view_functions[endpoint])
