"""The app's extensions: database, Redis, after-commit hooks, watchers, flask-smorest ``Api``.

They are built in ``init_app`` from the app's config and kept in ``app.extensions["facets"]``;
nothing connects at import time. ``state()`` reaches them from inside a request or command.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from flask import Flask, current_app

from flask_smorest import Api

from facets.config import EMBEDDED_REDIS_URL, normalize_database_url
from facets.counts.body_memo import BodyMemo
from facets.counts.cache import CounterCache
from facets.counts.labels import ProjectLabels
from facets.counts.watch import Watchers, db_versions
from facets.ops.metrics import HOOK_FAILURES
from models import Database, HookRegistry, UnitOfWork

REDIS_TIMEOUT_S = 0.5


@dataclass
class FacetsState:
    """Everything one app instance owns."""

    db: Database
    redis: redis.Redis
    cache: CounterCache
    labels: ProjectLabels
    body_memo: BodyMemo
    hooks: HookRegistry
    watchers: Watchers
    api: Api
    recount_timeout_ms: int

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work whose commits run this app's after-commit hooks."""
        return UnitOfWork(self.db, self.hooks)


def make_redis(url: str) -> redis.Redis:
    """A Redis client; ``fakeredis://`` gives an in-process server (the embedded default)."""
    if url == EMBEDDED_REDIS_URL or url.startswith("fakeredis://"):
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    return redis.Redis.from_url(
        url,
        protocol=2,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        # One quick retry: a request must not stall on Redis when SQL can answer instead.
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
    )


def init_app(app: Flask, api: Api) -> FacetsState:
    """Build the extensions of ``app`` from its config; ``api`` is bound to it here too."""
    db = Database(
        normalize_database_url(app.config["DATABASE_URL"]),
        connect_timeout_s=app.config["DB_CONNECT_TIMEOUT_S"],
        lock_timeout_ms=app.config["DB_LOCK_TIMEOUT_MS"],
        statement_timeout_ms=app.config["DB_STATEMENT_TIMEOUT_MS"],
    )
    client = make_redis(app.config["REDIS_URL"])
    recount_timeout_ms = app.config["RECOUNT_TIMEOUT_MS"]
    # A lease outlives the longest recount it covers, so a crashed holder frees it soon.
    cache = CounterCache(client, lease_ms=recount_timeout_ms + 1000)
    hooks = HookRegistry(on_failure=lambda _hook, _exc: HOOK_FAILURES.inc())
    hooks.register(cache.after_commit)
    # Waiting reads are woken by their orgs' new versions (after the cache has them).
    watchers = Watchers(
        client, lambda org_ids: db_versions(db, org_ids), recheck_s=app.config["WATCH_RECHECK_S"]
    )
    hooks.register(watchers.after_commit)
    facets_state = FacetsState(
        db=db,
        redis=client,
        cache=cache,
        labels=ProjectLabels(db),
        body_memo=BodyMemo(app.config["FACETS_BODY_MEMO_BYTES"]),
        hooks=hooks,
        watchers=watchers,
        api=api,
        recount_timeout_ms=recount_timeout_ms,
    )
    app.extensions["facets"] = facets_state
    api.init_app(app)
    return facets_state


def state() -> FacetsState:
    """The extensions of the current app."""
    return current_app.extensions["facets"]
