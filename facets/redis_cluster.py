"""The Redis Cluster client: ``REDIS_URL=redis+cluster://host:port[,host:port...]``.

``rediss+cluster://`` is the same over TLS; both are the spellings the ``limits`` library uses
for its cluster storage. The nodes listed are only where discovery starts: the client learns
the slot map from them and follows ``MOVED`` (a slot moved for good, or a replica promoted)
and ``ASK`` (a slot being migrated) itself.

The client behaves as the single-node one does for the callers, whose scripts each keep their
keys on one slot (the ``{<org id>}`` hash tag): a cluster that cannot be reached or whose
slots are not all served raises ``redis.ConnectionError``, never a bare
``RedisClusterException``, so the read path answers from SQL and the writes' updates are
absorbed. It is built on first use (``LazyCluster``):
a cluster that is down when the app starts does not stop the app; it serves from SQL and
connects once a node answers. A URL whose nodes answer but are no cluster is refused.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder
from redis.exceptions import RedisClusterException
from redis.retry import Retry

NOT_A_CLUSTER = "Cluster mode is not enabled"  # what redis-py says of a single Redis
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
REBUILD_AFTER_S = 1.0
DEFAULT_PORT = 6379
# A master that died is replaced within the cluster's node timeout: a command retries
# twice, briefly (each retry reads the slot map again), then the caller answers from SQL.
RETRIES = 2
# After a connection error the client reads the slot map again, at most this often (its
# default, 1 s, would leave a promoted replica's slots answered from SQL for up to that long).
TOPOLOGY_REFRESH_S = 0.25


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """The single-node URL of the first node (credentials, TLS and options kept) and every
    listed node's (host, port).

    :raise RuntimeError: no node, or a port that is not a number.
    """
    scheme, _, rest = url.partition("://")
    base = CLUSTER_SCHEMES[scheme.lower()]
    parts = urlsplit(f"{base}://{rest}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host or (port and not port.isdigit()):
            raise RuntimeError(
                f"REDIS_URL: {item.strip()!r} is not host:port; expected "
                f"{scheme}://host:port[,host:port...]"
            )
        nodes.append((host, int(port) if port else DEFAULT_PORT))
    if not nodes:
        raise RuntimeError(f"REDIS_URL names no node; expected {scheme}://host:port[,...]")
    auth = f"{userinfo}@" if userinfo else ""
    first = f"{base}://{auth}{nodes[0][0]}:{nodes[0][1]}{parts.path}"
    if parts.query:
        first += f"?{parts.query}"
    return first, nodes


class ClusterClient(RedisCluster):
    """A ``RedisCluster`` whose topology failures are the ``ConnectionError`` every caller
    handles: ``RedisClusterException`` is no ``RedisError``, and the client raises it when
    no node answers, when a slot has no node (a cluster being re-created) or when the nodes
    disagree on the slot map. Our keys are one org's, on one slot, so at run time nothing
    else raises it."""

    def execute_command(self, *args, **kwargs):
        try:
            return super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"redis cluster unusable: {exc}") from exc


class LazyCluster:
    """A ``ClusterClient`` built on first use, and again at most every ``REBUILD_AFTER_S``
    while its nodes cannot be reached. Attribute access is the client's."""

    def __init__(self, url: str, **options: Any) -> None:
        self._url, self._options = url, options
        self._client: ClusterClient | None = None
        self._lock = threading.Lock()
        self._next_try = 0.0

    def _build(self) -> ClusterClient:
        first, nodes = cluster_nodes(self._url)
        return ClusterClient(
            url=first,
            startup_nodes=[ClusterNode(host, port) for host, port in nodes[1:]],
            **self._options,
        )

    @property
    def client(self) -> ClusterClient:
        """The cluster client. :raise redis.ConnectionError: no node answers (yet)."""
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                if time.monotonic() < self._next_try:
                    raise redis.ConnectionError("redis cluster unreachable (retrying soon)")
                try:
                    self._client = self._build()
                except RedisClusterException as exc:
                    self._next_try = time.monotonic() + REBUILD_AFTER_S
                    raise redis.ConnectionError(f"redis cluster unusable: {exc}") from exc
        return self._client

    def connect_now(self) -> None:
        """Connect at start-up if the cluster answers (else at first use, as it comes back).

        :raise RuntimeError: a node answers but is no cluster node.
        """
        try:
            _ = self.client
        except redis.ConnectionError as exc:
            if NOT_A_CLUSTER in str(exc.__cause__ or ""):
                raise RuntimeError(
                    f"REDIS_URL names no usable Redis Cluster: {exc.__cause__}"
                ) from None

    def get_encoder(self) -> Encoder:
        """The client's encoder, without connecting (scripts are registered at start-up)."""
        return Encoder("utf-8", "strict", True)

    def register_script(self, script: str) -> Script:
        return Script(self, script)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def redis_cluster(url: str, *, timeout_s: float) -> LazyCluster:
    """The client of ``REDIS_URL`` (a cluster URL): timeouts and replies as ``make_redis``'s."""
    cluster_nodes(url)  # a malformed URL is refused at start-up, not at first use
    return LazyCluster(
        url,
        protocol=2,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), RETRIES),
        topology_refresh_min_interval=TOPOLOGY_REFRESH_S,
    )


def cluster_ready(client: LazyCluster) -> None:
    """The readiness probe: every slot is served.

    :raise redis.RedisError: the cluster is unreachable or reports a state other than ``ok``.
    """
    info = client.cluster_info()
    if info.get("cluster_state") != "ok":
        raise redis.ConnectionError(f"cluster_state is {info.get('cluster_state')}")
