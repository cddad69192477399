"""``flask facets rebuild`` and ``flask facets verify``: the counter cache's admin commands.

Both compare each org's Redis hashes with the one SQL recount (``models.recount``). Rebuild
force-installs each recount: safe while traffic flows, since a hash replaced by an older
recount is still exact for its label (merely behind, and brought forward by the next commit
or read), and it repairs a hash labelled ahead of SQL, which a restored database leaves.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass

import redis
from sqlalchemy import select

import click
from flask import current_app

from facets.cli.errors import OneLineGroup
from facets.config import is_embedded_redis
from facets.counts.cache import CachedCells, CounterCache, Totals, keyed_cells, rollup
from facets.extensions import state
from models import Database, Org
from models.access import org_not_found
from models.recount import Recount, recount_org
from models.session import wait_for_locks

facets_cli = OneLineGroup("facets", help="The Redis counter cache of the facets.")

VERIFY_ATTEMPTS = 5
VERIFY_RETRY_S = 0.05


@dataclass(frozen=True)
class Difference:
    org: str
    field: str
    cache: object
    sql: object


def _orgs(db: Database, slug: str | None) -> list[tuple[uuid.UUID, str]]:
    with db.read_session() as session:
        wait_for_locks(db, session)
        query = select(Org.id, Org.slug).order_by(Org.slug)
        if slug is not None:
            query = query.where(Org.slug == slug)
        orgs = [tuple(row) for row in session.execute(query)]
    if slug is not None and not orgs:
        raise click.ClickException(org_not_found(slug).detail)
    return orgs


def require_the_servers_cache() -> None:
    """Refuse to compare or rebuild a cache this process cannot share with the server.

    The embedded Redis (``fakeredis://``) lives inside each process: a command would read and
    write its own empty one. Only an app built with TESTING runs its requests and commands in
    one process (the test runner), and so shares it.

    :raise click.ClickException: the cache is embedded.
    """
    if is_embedded_redis(current_app.config["REDIS_URL"]) and not current_app.testing:
        raise click.ClickException(
            "REDIS_URL is the embedded fakeredis://, which lives inside the server's process: "
            "this command cannot see it; set REDIS_URL to the server's Redis."
        )


Snapshot = tuple[CachedCells | None, Totals | None]


def read_snapshot(cache: CounterCache, org_id: uuid.UUID) -> Snapshot | None:
    """The org's hashes, or None if they hold what no install writes (a value that is not a
    count, a key of another type): a difference to report, and for rebuild to replace.

    :raise redis.RedisError: Redis is unreachable, or refuses commands (out of memory).
    """
    try:
        return cache.snapshot(org_id)
    except redis.exceptions.OutOfMemoryError:
        raise  # Redis refused the read, whatever the hashes hold
    except (ValueError, redis.ResponseError):
        return None


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
    diffs = []
    if cells.version != recount.version or totals.version != recount.version:
        diffs.append(
            Difference(slug, "version", f"{cells.version}/{totals.version}", recount.version)
        )
    counted_cells = keyed_cells(recount.cells)
    for cell in sorted(set(cells.cells) | set(counted_cells), key=str):
        cached, counted = cells.cells.get(cell, 0), counted_cells.get(cell, 0)
        if cached != counted:
            diffs.append(Difference(slug, f"cell {cell[0]}:{cell[1] or '-'}", cached, counted))
    by_state, by_project = rollup(counted_cells)
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


def verify_org(cache: CounterCache, db: Database, slug: str, org_id: uuid.UUID) -> list[Difference]:
    """Differences between cache and SQL, retried while a commit is still being applied."""
    for _ in range(VERIFY_ATTEMPTS):
        recount = recount_org(db, org_id)
        if recount is None:
            return []
        diffs = compare(slug, read_snapshot(cache, org_id), recount)
        if not diffs or all(d.field != "version" for d in diffs):
            return diffs
        time.sleep(VERIFY_RETRY_S)
    return diffs


@facets_cli.command("verify")
@click.option("--org", "slug", help="Only this org (default: all).")
def verify(slug: str | None) -> None:
    """Compare the cache with SQL without changing anything; exit 1 on any difference."""
    require_the_servers_cache()
    st = state()
    diffs: list[Difference] = []
    orgs = _orgs(st.db, slug)
    try:
        for org_id, org_slug in orgs:
            diffs.extend(verify_org(st.cache, st.db, org_slug, org_id))
    except redis.RedisError as exc:
        raise click.ClickException(redis_error_line(exc)) from None
    if diffs:
        click.echo(f"{'org':<24} {'field':<52} {'cache':>12} {'sql':>12}")
        for d in diffs:
            click.echo(f"{d.org:<24} {d.field:<52} {d.cache!s:>12} {d.sql!s:>12}")
        click.echo(f"{len(diffs)} differences in {len({d.org for d in diffs})} of {len(orgs)} orgs")
        raise SystemExit(1)
    click.echo(f"cache agrees with SQL for {len(orgs)} orgs")


@facets_cli.command("rebuild")
@click.option("--org", "slug", help="Only this org (default: all).")
def rebuild(slug: str | None) -> None:
    """Recount orgs from SQL and install the counts in Redis (safe while traffic flows)."""
    require_the_servers_cache()
    st = state()
    started = time.monotonic()
    orgs = _orgs(st.db, slug)
    differed = 0
    try:
        with click.progressbar(orgs, label="rebuilding", file=sys.stderr) as bar:
            for org_id, org_slug in bar:
                recount = recount_org(st.db, org_id)
                if recount is None:
                    continue
                snapshot = read_snapshot(st.cache, org_id)
                if compare(org_slug, snapshot, recount) or snapshot[0] is None:  # or cold
                    differed += 1
                if st.cache.install(org_id, recount, force=True) == "error":
                    raise redis.ConnectionError("install failed")
    except redis.RedisError as exc:
        raise click.ClickException(redis_error_line(exc)) from None
    click.echo(
        f"rebuilt {len(orgs)} orgs, {differed} differed before, {time.monotonic() - started:.2f}s"
    )


def init_app(app) -> None:
    app.cli.add_command(facets_cli)
