"""``flask facets rebuild`` and ``flask facets verify``: the counter cache's admin commands.

Both compare each org's Redis hashes with the one SQL recount (``models.recount``), a batch of
orgs per SQL snapshot and per Redis pipeline (``facets.cli.passes``). Rebuild force-installs
each recount: safe while traffic flows, since a hash replaced by an older recount is still
exact for its label (merely behind, and brought forward by the next commit or read), and it
repairs a hash labelled ahead of SQL, which a restored database leaves.

The last line of stdout is the result; a Redis error fails the orgs it hit, the pass goes on,
and the command exits 1 at the end with a line saying where to resume. The work is imported in
the command bodies, so that ``flask --help`` does not load it.
"""

from __future__ import annotations

import time

import click
from flask import current_app

from facets.cli.errors import OneLineGroup

facets_cli = OneLineGroup("facets", help="The Redis counter cache of the facets.")

_org = click.option("--org", "slug", help="Only this org (default: all).")
_resume = click.option(
    "--resume-from",
    "resume_from",
    metavar="SLUG",
    help="Start at this org, in the order a pass goes (org id): where a failed pass said to.",
)
_batch = click.option(
    "--batch",
    type=click.IntRange(min=1, max=100_000),
    default=1000,
    show_default=True,
    help="Orgs per SQL snapshot and Redis pipeline.",
)


def require_the_servers_cache() -> None:
    """Refuse to compare or rebuild a cache this process cannot share with the server.

    The embedded Redis (``fakeredis://``) lives inside each process: a command would read and
    write its own empty one. Only an app built with TESTING runs its requests and commands in
    one process (the test runner), and so shares it.

    :raise click.ClickException: the cache is embedded.
    """
    from facets.config import is_embedded_redis

    if is_embedded_redis(current_app.config["REDIS_URL"]) and not current_app.testing:
        raise click.ClickException(
            "REDIS_URL is the embedded fakeredis://, which lives inside the server's process: "
            "this command cannot see it; set REDIS_URL to the server's Redis."
        )


@facets_cli.command("verify")
@_org
@_resume
@_batch
def verify(slug: str | None, resume_from: str | None, batch: int) -> None:
    """Compare the cache with SQL without changing anything; exit 1 on any difference."""
    require_the_servers_cache()
    from facets.cli.passes import OrgPass, compare, settled
    from facets.extensions import state

    st = state()
    run = OrgPass(st.db, st.cache, "verifying", slug, resume_from, batch)
    diffs = []
    for org, reply in run.run(install=False):
        if reply.agrees:
            continue
        found = compare(org.slug, reply.snapshot, org.recount)
        if not settled(found):  # a commit in flight: check this org again, atomically
            found = run.recheck(org)
        diffs.extend(found)
    if diffs:
        click.echo(f"{'org':<24} {'field':<52} {'cache':>12} {'sql':>12}")
        for d in diffs:
            click.echo(f"{d.org:<24} {d.field:<52} {d.cache!s:>12} {d.sql!s:>12}")
        click.echo(f"{len(diffs)} differences in {len({d.org for d in diffs})} of {run.orgs} orgs")
    elif not run.failed:
        click.echo(f"cache agrees with SQL for {run.orgs} orgs")
    else:
        click.echo(f"cache agrees with SQL for {run.orgs - run.failed} of {run.orgs} orgs")
    failure = run.failure("verified")
    if failure is not None:
        raise click.ClickException(failure)
    if diffs:
        raise SystemExit(1)


@facets_cli.command("rebuild")
@_org
@_resume
@_batch
def rebuild(slug: str | None, resume_from: str | None, batch: int) -> None:
    """Recount orgs from SQL and install the counts in Redis (safe while traffic flows)."""
    require_the_servers_cache()
    from facets.cli.passes import OrgPass
    from facets.extensions import state

    st = state()
    started = time.monotonic()
    run = OrgPass(st.db, st.cache, "rebuilding", slug, resume_from, batch)
    differed = sum(reply.before != "same" for _, reply in run.run(install=True))  # or cold
    done = run.orgs - run.failed
    click.echo(
        f"rebuilt {done} orgs, {differed} differed before, {time.monotonic() - started:.2f}s"
    )
    failure = run.failure("rebuilt")
    if failure is not None:
        raise click.ClickException(failure)


def init_app(app) -> None:
    app.cli.add_command(facets_cli)
