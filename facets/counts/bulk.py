"""Many orgs' hashes in one round trip: the pipelined snapshot and install of the admin commands.

``run_orgs`` sends, for each org of a batch, ``HGETALL`` of both hashes and (for a rebuild) one
``INSTALL_LUA`` call, all in one non-transactional pipeline. What keeps the cache exact is
unchanged from ``CounterCache.install``: each install is one atomic script on the keys of one
org, from a recount exact for its label. A pipeline is not a transaction, so an org's two
hashes are read back to back but not atomically: a commit applied between the two reads shows
as a version difference, which ``flask facets verify`` re-checks with the atomic
``CounterCache.snapshot``. On a Redis Cluster client the pipeline is redis-py's
``ClusterPipeline``: each command goes to the node that owns its key's slot (every key of an
org carries the hash tag ``{<org id>}``), one round trip per node per batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.exceptions import NoScriptError

from facets.counts.cache import (
    CachedCells,
    CounterCache,
    Totals,
    _parse_cells,
    _parse_totals,
)
from facets.counts.scripts import INSTALL_LUA
from facets.ops.metrics import CACHE_INSTALLS
from models.recount import Recount

Snapshot = tuple[CachedCells | None, Totals | None]


@dataclass(frozen=True)
class OrgReply:
    """What Redis answered for one org of a batch."""

    snapshot: Snapshot | None  # None: the hashes hold what no install writes
    installed: str | None = None  # the install's outcome, when one was sent
    error: redis.RedisError | None = None  # Redis refused this org's commands


def parse_snapshot(raw_cells, raw_totals) -> Snapshot | None:
    """Both hashes from their ``HGETALL`` replies; None if either holds what no install writes
    (a value that is not a count, a key of another type: the reply is then an error).

    :raise redis.RedisError: the reply is Redis refusing the read (out of memory, gone).
    """
    for raw in (raw_cells, raw_totals):
        if isinstance(raw, redis.RedisError):
            if isinstance(raw, redis.exceptions.OutOfMemoryError) or not isinstance(
                raw, redis.ResponseError
            ):
                raise raw  # Redis refused the read, whatever the hashes hold
            return None
    try:
        return _parse_cells(raw_cells), _parse_totals(raw_totals)
    except ValueError:
        return None


def run_orgs(
    cache: CounterCache,
    org_ids: Sequence[uuid.UUID],
    installs: Sequence[Recount] | None = None,
    *,
    force: bool = False,
) -> list[OrgReply]:
    """Read each org's hashes and, given ``installs`` (one recount per org), install each
    recount right after its read, in one pipeline; a reply per org, in order.

    :raise redis.RedisError: the pipeline as a whole failed (Redis unreachable).
    """
    script = cache.redis.register_script(INSTALL_LUA)
    pipe = cache.redis.pipeline(transaction=False)
    for i, org_id in enumerate(org_ids):
        keys = cache.keys(org_id)
        pipe.hgetall(keys[0])
        pipe.hgetall(keys[1])
        if installs is not None:
            script(keys=keys, args=cache.install_args(installs[i], force), client=pipe)
    replies = pipe.execute(raise_on_error=False)
    step = 2 if installs is None else 3
    if installs is not None:
        _retry_unknown_script(cache, script, org_ids, installs, force, replies)
    return [_reply(replies[i * step : (i + 1) * step]) for i in range(len(org_ids))]


def _retry_unknown_script(cache, script, org_ids, installs, force, replies) -> None:
    """A cluster pipeline leaves NOSCRIPT to its caller (a node that never saw the script, or
    one restarted empty): load it everywhere and send those installs again."""
    unknown = [i for i in range(len(org_ids)) if isinstance(replies[3 * i + 2], NoScriptError)]
    if not unknown:
        return
    script.sha = cache.redis.script_load(INSTALL_LUA)
    pipe = cache.redis.pipeline(transaction=False)
    for i in unknown:
        args = cache.install_args(installs[i], force)
        script(keys=cache.keys(org_ids[i]), args=args, client=pipe)
    for i, reply in zip(unknown, pipe.execute(raise_on_error=False), strict=True):
        replies[3 * i + 2] = reply


def _reply(replies: list) -> OrgReply:
    installed = error = None
    if len(replies) == 3:
        outcome = replies[2]
        if isinstance(outcome, redis.RedisError):
            installed, error = "error", outcome
        else:
            installed = outcome.partition(":")[0]
        CACHE_INSTALLS.labels(result=installed).inc()
    try:
        return OrgReply(parse_snapshot(replies[0], replies[1]), installed, error)
    except redis.RedisError as exc:
        return OrgReply(None, installed, exc)
