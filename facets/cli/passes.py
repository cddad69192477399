"""One pass over the orgs for ``flask facets rebuild`` and ``verify``: batches of orgs recounted
in SQL at one snapshot (``models.recount.recount_orgs``), their hashes read (and, for a
rebuild, replaced) in one Redis pipeline (``facets.counts.bulk``), a progress bar on stderr.

Orgs go in id order (the keyset of the recount). A Redis error fails the orgs it hit, not the
pass: they are reported, the pass goes on, and the first failed org is where ``--resume-from``
picks up (every org after it is done again, which an install allows: it is exact for its own
label).
"""

from __future__ import annotations

import bisect
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from sqlalchemy import select

import click

from facets.counts.bulk import OrgReply, Snapshot, run_orgs
from facets.counts.cache import CounterCache, keyed_cells, rollup
from models import Database, Org
from models.recount import OrgRecount, Recount, recount_org, recount_orgs
from models.session import wait_for_locks

VERIFY_ATTEMPTS = 5
VERIFY_RETRY_S = 0.05
WORKERS = 2  # batches in flight: one's SQL overlaps another's Redis round trip


@dataclass(frozen=True)
class Difference:
    org: str
    field: str
    cache: object
    sql: object


def redis_error_line(error: redis.RedisError) -> str:
    """What an admin reads when Redis failed a command."""
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return "Redis is out of memory (maxmemory reached) and refuses commands; free some."
    return f"Redis is unreachable: {type(error).__name__}"


def compare(slug: str, snapshot: Snapshot | None, recount: Recount) -> list[Difference]:
    """How an org's hashes differ from a recount (empty when they agree or are cold)."""
    if snapshot is None:
        return [Difference(slug, "hashes", "unreadable", "counts")]
    cells, totals = snapshot
    if cells is None and totals is None:
        return []
    if cells is None or totals is None:
        return [Difference(slug, "hashes", "one of cells/totals missing", "both or neither")]
    counted_cells = keyed_cells(recount.cells)
    by_state, by_project = rollup(counted_cells)
    if (
        cells.version == totals.version == recount.version
        and cells.cells == counted_cells
        and totals.by_state == by_state
        and totals.by_project == by_project
    ):
        return []  # the common case, without the field by field walk below
    diffs = []
    if cells.version != recount.version or totals.version != recount.version:
        diffs.append(
            Difference(slug, "version", f"{cells.version}/{totals.version}", recount.version)
        )
    for cell in sorted(set(cells.cells) | set(counted_cells), key=str):
        cached, counted = cells.cells.get(cell, 0), counted_cells.get(cell, 0)
        if cached != counted:
            diffs.append(Difference(slug, f"cell {cell[0]}:{cell[1] or '-'}", cached, counted))
    for name, cached_map, counted_map in (
        ("state", totals.by_state, by_state),
        ("project", totals.by_project, by_project),
    ):
        for key in sorted(set(cached_map) | set(counted_map), key=str):
            if cached_map.get(key, 0) != counted_map.get(key, 0):
                diffs.append(
                    Difference(
                        slug, f"{name} {key}", cached_map.get(key, 0), counted_map.get(key, 0)
                    )
                )
    return diffs


def read_snapshot(cache: CounterCache, org_id: uuid.UUID) -> Snapshot | None:
    """The org's hashes read atomically, or None if they hold what no install writes.

    :raise redis.RedisError: Redis is unreachable, or refuses commands (out of memory).
    """
    try:
        return cache.snapshot(org_id)
    except redis.exceptions.OutOfMemoryError:
        raise  # Redis refused the read, whatever the hashes hold
    except (ValueError, redis.ResponseError):
        return None


def settled(diffs: list[Difference]) -> bool:
    """Whether differences are final: no label difference, which a commit still being applied
    (or one that landed after the recount) explains."""
    return all(d.field != "version" for d in diffs)


def verify_org(cache: CounterCache, db: Database, slug: str, org_id: uuid.UUID) -> list[Difference]:
    """Differences between cache and SQL, retried while a commit is still being applied."""
    for _ in range(VERIFY_ATTEMPTS):
        recount = recount_org(db, org_id)
        if recount is None:
            return []
        diffs = compare(slug, read_snapshot(cache, org_id), recount)
        if settled(diffs):
            return diffs
        time.sleep(VERIFY_RETRY_S)
    return diffs


@dataclass
class OrgPass:
    """A pass over the orgs (all, one ``slug``, or from ``resume_from`` on), batch by batch."""

    db: Database
    cache: CounterCache
    label: str
    slug: str | None = None
    resume_from: str | None = None
    batch: int = 1000
    orgs: int = 0
    failed: int = 0
    first_failed: str | None = None
    errors: dict[str, int] = field(default_factory=dict)  # error line -> orgs it failed

    def run(self, install: bool) -> Iterator[tuple[OrgRecount, OrgReply]]:
        """Each org with its Redis reply (its hashes checked against its recount, and the
        recount installed, forced, if ``install``), in org id order, with a progress bar
        (orgs/s) on stderr when it is a terminal; the orgs Redis failed are reported and left
        out.

        The batches are id ranges cut from the orgs listed at the start (an org created since
        is counted with its range). A few run at once, so that one batch's SQL overlaps
        another's Redis round trip; their results are taken in order.
        """
        ranges = self._ranges()
        total = sum(n for _, _, n in ranges)
        started = time.monotonic()
        workers = 1 if self.db.is_sqlite else WORKERS
        with (
            ThreadPoolExecutor(workers, thread_name_prefix="facets-pass") as pool,
            click.progressbar(
                length=total,
                label=self.label,
                file=sys.stderr,
                item_show_func=lambda rate: rate,
                hidden=not sys.stderr.isatty(),  # for a person watching; not into logs
            ) as bar,
        ):
            work = pool.map(lambda r: self._batch(r[0], r[1], install), ranges)
            for batch, replies in work:
                if isinstance(replies, redis.RedisError):
                    self.fail(batch, replies)
                    replies = []
                for org, reply in zip(batch, replies, strict=False):
                    if reply.error is not None:
                        self.fail([org], reply.error)
                    else:
                        yield org, reply
                self.orgs += len(batch)
                rate = self.orgs / max(time.monotonic() - started, 1e-9)
                bar.update(len(batch), f"{rate:,.0f} orgs/s")

    def _batch(self, after, until, install: bool):
        batch = recount_orgs(self.db, after=after, until=until, limit=None, slug=self.slug)
        if not batch:
            return batch, []
        try:
            return batch, run_orgs(self.cache, batch, install=install, force=True)
        except redis.RedisError as exc:
            return batch, exc

    def _ranges(self) -> list[tuple[uuid.UUID | None, uuid.UUID, int]]:
        """(after, until, orgs) of each batch, from the orgs there are now."""
        query = select(Org.id).order_by(Org.id)
        if self.slug is not None:
            query = query.where(Org.slug == self.slug)
        with self.db.read_session() as session:
            wait_for_locks(self.db, session)  # admin work waits for a migration's lock
            ids = list(session.scalars(query))
            first = 0
            if self.resume_from is not None:
                start = session.scalar(select(Org.id).where(Org.slug == self.resume_from))
                if start is None:
                    raise click.ClickException(f"Organization '{self.resume_from}' not found.")
                first = bisect.bisect_left(ids, start)
        if self.slug is not None and not ids:
            raise click.ClickException(f"Organization '{self.slug}' not found.")
        ranges = []
        for i in range(first, len(ids), self.batch):
            end = min(i + self.batch, len(ids))
            ranges.append((ids[i - 1] if i else None, ids[end - 1], end - i))
        return ranges

    def fail(self, orgs: list[OrgRecount], error: redis.RedisError) -> None:
        """Record that Redis failed these orgs (reported on stderr now, summed at the end)."""
        line = redis_error_line(error)
        self.failed += len(orgs)
        self.first_failed = self.first_failed or orgs[0].slug
        self.errors[line] = self.errors.get(line, 0) + len(orgs)
        if len(orgs) > 1:
            click.echo(f"\n{len(orgs)} orgs from {orgs[0].slug} failed: {line}", err=True)
        else:
            click.echo(f"\norg {orgs[0].slug} failed: {line}", err=True)

    def recheck(self, org: OrgRecount) -> list[Difference]:
        """``verify_org`` of one org (its own recount, the atomic snapshot, retries)."""
        try:
            return verify_org(self.cache, self.db, org.slug, org.org_id)
        except redis.RedisError as exc:
            self.fail([org], exc)
            return []

    def failure(self, verb: str) -> str | None:
        """The closing error line, or None if every org went through."""
        if not self.failed:
            return None
        if len(self.errors) == 1:
            why = next(iter(self.errors))
        else:
            why = " / ".join(f"{n} orgs: {line}" for line, n in self.errors.items())
        return (
            f"{self.failed} of {self.orgs} orgs not {verb} "
            f"(resume with --resume-from {self.first_failed}): {why}"
        )
