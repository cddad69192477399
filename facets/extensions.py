"""The app's extensions: database, Redis, after-commit hooks, watchers, flask-smorest ``Api``
(not in an admin command's app).

They are built in ``init_app`` from the app's config and kept in ``app.extensions["facets"]``;
nothing connects at import time. ``state()`` reaches them from inside a request or command.

``REDIS_URL`` names one Redis (``redis://``, ``rediss://``) or a Redis Cluster
(``redis+cluster://host:port[,host:port...]``, ``rediss+cluster://``; ``facets.redis_cluster``
builds that client). ``init_app`` asks the server once which it is and refuses a single-node
URL that points at a cluster node: that client would follow no ``MOVED`` and most orgs would
be answered from SQL forever. A server that does not answer then is no reason to refuse: the
facets come from SQL until it does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from flask import Flask, current_app

from facets.config import EMBEDDED_REDIS_URL, normalize_database_url
from facets.counts.body_memo import BodyMemo
from facets.counts.cache import CounterCache
from facets.counts.labels import ProjectLabels
from facets.counts.watch import Watchers, db_versions
from facets.ops.metrics import HOOK_FAILURES
from facets.redis_cluster import LazyCluster, is_cluster_url, redis_cluster
from models import Database, HookRegistry, UnitOfWork

if TYPE_CHECKING:
    from flask_smorest import Api

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 0.5


@dataclass
class FacetsState:
    """Everything one app instance owns."""

    db: Database
    redis: redis.Redis | LazyCluster
    cache: CounterCache
    labels: ProjectLabels
    body_memo: BodyMemo
    hooks: HookRegistry
    watchers: Watchers
    api: Api | None  # None in an admin command's app, which serves no request
    recount_timeout_ms: int

    def unit_of_work(self, *, one_statement: bool = False) -> UnitOfWork:
        """A new unit of work whose commits run this app's after-commit hooks (``one_statement``:
        for one ``@one_statement`` service alone, see ``models.uow``)."""
        return UnitOfWork(self.db, self.hooks, one_statement=one_statement)


def make_redis(url: str) -> redis.Redis | LazyCluster:
    """A Redis client; ``fakeredis://`` gives an in-process server (the embedded default),
    ``redis+cluster://`` and ``rediss+cluster://`` a Redis Cluster client."""
    if url == EMBEDDED_REDIS_URL or url.startswith("fakeredis://"):
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    if is_cluster_url(url):
        return redis_cluster(url, timeout_s=REDIS_TIMEOUT_S)
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


def check_redis(client: redis.Redis | LazyCluster, url: str) -> None:
    """Refuse a client that cannot work with the server ``url`` names (one round trip).

    :raise RuntimeError: a single-node URL names a cluster node, or a cluster URL names
        something that is not a cluster.
    """
    if isinstance(client, LazyCluster):
        client.connect_now()  # raises RuntimeError when the nodes are no cluster
        return
    if url == EMBEDDED_REDIS_URL or url.startswith("fakeredis://"):
        return
    try:
        enabled = client.info("cluster").get("cluster_enabled")
    except redis.RedisError as exc:
        log.warning(
            "redis not reachable at start-up (%s): facets come from SQL", type(exc).__name__
        )
        return
    if enabled in (1, "1"):
        raise RuntimeError(
            "REDIS_URL points at a Redis Cluster node but names a single Redis: use "
            "redis+cluster://host:port[,host:port...] (rediss+cluster:// for TLS)"
        )


def init_app(app: Flask, api: Api | None) -> FacetsState:
    """Build the extensions of ``app`` from its config; ``api`` (if any) is bound to it here."""
    db = Database(
        normalize_database_url(app.config["DATABASE_URL"]),
        connect_timeout_s=app.config["DB_CONNECT_TIMEOUT_S"],
        lock_timeout_ms=app.config["DB_LOCK_TIMEOUT_MS"],
        statement_timeout_ms=app.config["DB_STATEMENT_TIMEOUT_MS"],
    )
    client = make_redis(app.config["REDIS_URL"])
    check_redis(client, app.config["REDIS_URL"])
    recount_timeout_ms = app.config["RECOUNT_TIMEOUT_MS"]
    watchers = Watchers(
        client,
        lambda org_ids: db_versions(db, org_ids),
        recheck_s=app.config["WATCH_RECHECK_S"],
        sharded=isinstance(client, LazyCluster),
    )
    # A lease outlives the longest recount it covers, so a crashed holder frees it soon.
    # Waiting reads are woken by the version notice each cache update sends with it.
    cache = CounterCache(client, lease_ms=recount_timeout_ms + 1000, announce=watchers.notice)
    hooks = HookRegistry(on_failure=lambda _hook, _exc: HOOK_FAILURES.inc())
    hooks.register(cache.after_commit)
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
    if api is not None:
        api.init_app(app)
    return facets_state


def state() -> FacetsState:
    """The extensions of the current app."""
    return current_app.extensions["facets"]
