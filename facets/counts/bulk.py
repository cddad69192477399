"""Many orgs per round trip: the pipelined check and install of the admin commands.

``run_orgs`` sends, for each org of a batch, one script call: ``CHECK_LUA`` (verify) or
``INSTALL_LUA`` (rebuild), all in one non-transactional pipeline. Each compares the org's two
hashes with its recount inside Redis, atomically on the org's slot, so an org whose cache
agrees costs the client one short reply and no parsing; only the hashes of an org that
differs come back, to be compared field by field. What keeps the cache exact is unchanged
from ``CounterCache.install``: each install is one atomic script on the keys of one org, from a
recount exact for its label. On a Redis Cluster client the pipeline is redis-py's
``ClusterPipeline``: each command goes to the node that owns its key's slot (every key of an
org carries the hash tag ``{<org id>}``), one round trip per node per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.exceptions import NoScriptError

from facets.counts.cache import (
    CachedCells,
    CounterCache,
    Totals,
    _pairs,
    _parse_cells,
    _parse_totals,
)
from facets.counts.scripts import CHECK_LUA, INSTALL_LUA
from facets.ops.metrics import CACHE_INSTALLS
from models.recount import OrgRecount

Snapshot = tuple[CachedCells | None, Totals | None]


@dataclass(frozen=True)
class OrgReply:
    """What Redis answered for one org of a batch."""

    before: str | None  # the hashes against the recount: cold, same, differed (None: error)
    snapshot: Snapshot | None = None  # when they differed; None: they hold what no install writes
    installed: str | None = None  # the install's outcome, when one was sent
    error: redis.RedisError | None = None  # Redis refused this org's command

    @property
    def agrees(self) -> bool:
        """The hashes hold exactly the recount, or nothing (a cold cache is not a difference)."""
        return self.before in ("cold", "same")


def run_orgs(
    cache: CounterCache,
    orgs: Sequence[OrgRecount],
    *,
    install: bool = False,
    force: bool = False,
) -> list[OrgReply]:
    """Check each org's hashes against its recount and, if ``install``, install the recount
    in the same script, in one pipeline; a reply per org, in order.

    :raise redis.RedisError: the pipeline as a whole failed (Redis unreachable).
    """
    script = cache.redis.register_script(INSTALL_LUA if install else CHECK_LUA)

    def send(indexes: Sequence[int]) -> list:
        pipe = cache.redis.pipeline(transaction=False)
        for i in indexes:
            org = orgs[i]
            keys = cache.keys(org.org_id)
            if install:
                args = cache.install_args(org.version, org.words, force)
                script(keys=keys, args=args, client=pipe)
            else:
                script(keys=keys[:2], args=[org.version, org.words], client=pipe)
        return pipe.execute(raise_on_error=False)

    replies = send(range(len(orgs)))
    # A cluster pipeline leaves NOSCRIPT to its caller (a node that never saw the script, or
    # one restarted empty): load it everywhere and send those orgs again.
    unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if unknown:
        script.sha = cache.redis.script_load(script.script)
        for i, reply in zip(unknown, send(unknown), strict=True):
            replies[i] = reply
    return [_installed(reply) if install else _checked(reply) for reply in replies]


def _checked(reply) -> OrgReply:
    if isinstance(reply, redis.RedisError):
        return _refused(reply)
    if reply == "unreadable":
        return OrgReply("differed", None)
    if isinstance(reply, str):
        return OrgReply(reply)
    return OrgReply("differed", _parse(*reply))


def _installed(reply) -> OrgReply:
    if isinstance(reply, redis.RedisError):
        CACHE_INSTALLS.labels(result="error").inc()
        return OrgReply(None, installed="error", error=reply)
    outcome, _, before = reply.partition(":")
    CACHE_INSTALLS.labels(result=outcome).inc()
    return OrgReply("differed" if before in ("", "unreadable") else before, installed=outcome)


def _refused(error: redis.RedisError) -> OrgReply:
    """A script's error: Redis refusing commands, or hashes of another type (unreadable)."""
    if isinstance(error, redis.exceptions.OutOfMemoryError) or not isinstance(
        error, redis.ResponseError
    ):
        return OrgReply(None, error=error)
    return OrgReply("differed", None)


def _parse(flat_cells: list, flat_totals: list) -> Snapshot | None:
    """Both hashes from the script's flat lists; None if either holds what no install writes."""
    try:
        return _parse_cells(_pairs(flat_cells)), _parse_totals(_pairs(flat_totals))
    except ValueError:
        return None
