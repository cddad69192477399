"""Slow clients against the production topology: ``python -m soak.slow_clients``.

Starts the real stack on 127.0.0.1 (a scratch database on the given PostgreSQL, the given
Redis, gunicorn as ``gunicorn.conf.py`` ships it, nginx from ``deploy/nginx.conf`` in front),
then, in one run, side by side:

1. through the proxy: an authenticated facets probe every 100 ms for ``--hold`` seconds
   without an attack, then for ``--hold`` seconds while ``--sockets`` slow sockets of each
   kind (headers trickled, body trickled, idle; ``soak/attack.py``) are held; failed probes,
   p50 and p99 of each;
2. straight at gunicorn, each kind alone at growing socket counts (``--levels``) held
   ``--level-hold`` seconds each, until probes fail: what gunicorn alone tolerates.

Exits 1 when a probe through the proxy failed under attack or its p99 is over 3x the p99
without it. Everything it starts is stopped and the scratch database dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from models import migrate
from soak.attack import KINDS, Probes, attacked_probes, probe_while, settle
from soak.harness import ORG, app_config, seed_accounts, seed_projects, server_env
from soak.nginx import Nginx
from soak.servers import Gunicorn, ScratchDatabase
from soak.traffic import Caller

MAX_CONTENT_LENGTH = 65536
MAX_P99_RATIO = 3.0


def raise_open_files_limit() -> int:
    """Raise this process's (and its children's) descriptor limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def summary(probes: Probes) -> str:
    p50, p99 = probes.percentile(50), probes.percentile(99)
    fmt = lambda v: "-" if v is None else f"{v:.1f} ms"  # noqa: E731
    return f"{probes.sent} probes, {len(probes.failures)} failed, p50 {fmt(p50)}, p99 {fmt(p99)}"


def through_the_proxy(nginx: Nginx, key: str, sockets: int, hold: float, log) -> bool:
    """Phase 1; whether the proxy held: no failed probe, p99 within the ratio."""
    host, port = "127.0.0.1", nginx.port
    quiet = probe_while(hold, host, port, ORG, key)
    log(f"proxy, no attack:               {summary(quiet)}")
    attacked, attackers = attacked_probes(hold, host, port, ORG, key, sockets)
    held = ", ".join(f"{a.kind} {a.count} (+{a.reopened} reopened)" for a in attackers)
    log(f"proxy, {sockets} slow sockets x {len(KINDS)}: {summary(attacked)}  [{held}]")
    if attacked.failures:
        log(f"  failures: {sorted(set(attacked.failures))}")
    quiet_p99, attacked_p99 = quiet.percentile(99), attacked.percentile(99)
    ratio = attacked_p99 / quiet_p99 if quiet_p99 and attacked_p99 else float("inf")
    log(f"  p99 under attack / p99 without: {ratio:.2f} (allowed {MAX_P99_RATIO})")
    return not attacked.failures and not quiet.failures and ratio <= MAX_P99_RATIO


def gunicorn_alone(gunicorn: Gunicorn, key: str, levels: list[int], hold: float, log) -> None:
    """Phase 2: each kind alone, growing counts, until a probe fails."""
    host, port = "127.0.0.1", gunicorn.port
    log(f"gunicorn alone, no attack:      {summary(probe_while(hold, host, port, ORG, key))}")
    for kind in KINDS:
        tolerated = 0
        for count in levels:
            if not settle(host, port, ORG, key):
                log("  gunicorn did not recover from the last attack within 40 s")
            probes, _ = attacked_probes(hold, host, port, ORG, key, count, kinds=(kind,))
            log(f"gunicorn alone, {count:4d} {kind:7s}:   {summary(probes)}")
            if probes.failures:
                log(f"  failures: {sorted(set(probes.failures))}")
                break
            tolerated = count
        else:
            count = None
        log(f"  => {kind}: probes all served up to {tolerated} sockets; failed at {count}")


@dataclass
class Stack:
    gunicorn: Gunicorn
    nginx: Nginx
    owner: Caller
    database: str


@contextlib.contextmanager
def proxied_stack(database_url: str, redis_url: str, work_dir: Path) -> Iterator[Stack]:
    """A scratch database on ``database_url`` (migrated, seeded: the org ``ORG``, an owner,
    projects and sandboxes), gunicorn as shipped on it and ``redis_url``, and nginx in front;
    all stopped, and the database dropped, afterwards."""
    database = ScratchDatabase(database_url, prefix="facets_slow")
    database.create()
    gunicorn = nginx = None
    try:
        migrate.upgrade(database.url)
        env = server_env(database.url, redis_url, MAX_CONTENT_LENGTH=str(MAX_CONTENT_LENGTH))
        _, owner, member = seed_accounts(app_config(env))
        # As shipped: gunicorn.conf.py's two workers per core (a real Redis), two threads each.
        gunicorn = Gunicorn(env, work_dir / "gunicorn.log", workers=2 * multiprocessing.cpu_count())
        gunicorn.start()
        nginx = Nginx(f"127.0.0.1:{gunicorn.port}", work_dir / "nginx.log", MAX_CONTENT_LENGTH)
        nginx.start()
        seed_projects(nginx.base_url, owner, member)
        yield Stack(gunicorn, nginx, owner, database.name)
    finally:
        for server in (nginx, gunicorn):
            if server is not None:
                server.stop()
        database.drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak.slow_clients", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server (a scratch database is created on it and dropped)",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
    )
    parser.add_argument("--sockets", type=int, default=500, help="per kind, through the proxy")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds per proxy phase")
    parser.add_argument("--levels", default="2,4,8,16,32,64,128,256,512")
    parser.add_argument("--level-hold", type=float, default=12.0)
    parser.add_argument("--skip-gunicorn-alone", action="store_true")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.levels.split(",")]
    print(f"open files limit: {raise_open_files_limit()}", flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    work_dir = Path(tempfile.mkdtemp(prefix="facets-slow-clients-"))
    with proxied_stack(args.database_url, args.redis_url, work_dir) as stack:
        log(
            f"gunicorn {stack.gunicorn.base_url} ({stack.gunicorn.workers} workers, as "
            f"gunicorn.conf.py ships them), nginx {stack.nginx.base_url}, db {stack.database}, "
            f"logs in {work_dir}"
        )
        held = through_the_proxy(stack.nginx, stack.owner.key, args.sockets, args.hold, log)
        if not args.skip_gunicorn_alone:
            gunicorn_alone(stack.gunicorn, stack.owner.key, levels, args.level_hold, log)
    log("PASS: the proxy held" if held else "FAIL: the proxy did not hold")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
