"""Run the fault soak: ``python -m soak.run [--long | --duration S] [--database-url URL]``.

Against gunicorn (2 workers, the project's gunicorn.conf.py) on a scratch PostgreSQL database
and a private Redis, all on 127.0.0.1: facets readers (an owner and a member, assorted
filters, some conditional requests) and sandbox writers (bursts with quiet gaps) run for a
bounded time while Redis is killed and restarted empty and a worker is SIGKILLed.

It fails on: a 5xx other than a facets 504; a request that got no answer without being in
flight when the worker was killed; ``flask facets verify`` exiting non-zero; an acknowledged
mutation missing from SQL; a facets answer that differs from the SQL count at its version.
Short mode (the test's, 25 s of traffic) has one of each fault; ``--long`` runs 5 minutes
with the fault cycle repeated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from models import migrate
from soak.harness import (
    ORG,
    REQUESTS_PER_SECOND_CAP,
    Traffic,
    add_database_url,
    app_config,
    check_acknowledged,
    flask_verify,
    seed_accounts,
    seed_projects,
    server_env,
)
from soak.oracle import Oracle
from soak.report import Report
from soak.servers import Gunicorn, PrivateRedis, ScratchDatabase
from soak.traffic import FACETS_PATH, Reader, Writer, call

SHORT_S = 25
LONG_S = 300
REDIS_DOWN_S = 0.5
READERS = 3


def fault_schedule(duration_s: float) -> list[tuple[float, str]]:
    """When to restart Redis and kill a worker: once each in a short run, every 40 s if long."""
    if duration_s <= 60:
        return [
            (0.25 * duration_s, "redis"),
            (0.5 * duration_s, "worker"),
            (0.75 * duration_s, "redis"),
        ]
    return [
        (start + offset, what)
        for start in range(0, int(duration_s) - 39, 40)
        for offset, what in ((10, "redis"), (20, "worker"), (30, "redis"))
    ]


def run_soak(
    server_url: str, duration_s: float, work_dir: Path, seed: int = 0, log=print
) -> Report:
    """Set everything up, run the traffic and the faults, judge, and tear everything down."""
    report = Report(duration_s)
    database = ScratchDatabase(server_url)
    redis_server = PrivateRedis(work_dir / "redis")
    database.create()
    gunicorn = oracle = None
    try:
        migrate.upgrade(database.url)
        redis_server.start()
        env = server_env(database.url, redis_server.url, work_dir / "prometheus")
        org_id, owner, member = seed_accounts(app_config(env))
        gunicorn = Gunicorn(env, work_dir / "gunicorn.log")
        gunicorn.start()
        log(f"soak: gunicorn {gunicorn.base_url}, redis {redis_server.url}, db {database.name}")
        projects = seed_projects(gunicorn.base_url, owner, member)
        oracle = Oracle(database.url, org_id)

        stop, allowed = threading.Event(), threading.Event()
        max_reads = int(duration_s * REQUESTS_PER_SECOND_CAP) + 1
        traffic = Traffic.start(
            readers=[
                Reader(
                    base_url=gunicorn.base_url,
                    org=ORG,
                    callers=[owner, member],
                    projects=projects,
                    oracle=oracle,
                    stop=stop,
                    max_requests=max_reads,
                    seed=seed * 100 + i,
                )
                for i in range(READERS)
            ],
            writers=[
                Writer(
                    base_url=gunicorn.base_url,
                    org=ORG,
                    caller=caller,
                    projects=caller_projects,
                    allowed=allowed,
                    stop=stop,
                    max_requests=max_reads,
                    seed=seed * 100 + 50 + i,
                )
                for i, (caller, caller_projects) in enumerate(
                    [(owner, [*projects, None]), (member, [projects[0], None])]
                )
            ],
            stop=stop,
            allowed=allowed,
        )
        try:
            for at, what in fault_schedule(duration_s):
                traffic.sleep_until(at)
                if what == "redis":
                    redis_server.stop()
                    time.sleep(REDIS_DOWN_S)
                    redis_server.start()
                else:
                    report.kill_times.append(time.monotonic())
                    pid = gunicorn.kill_worker()
                    what = f"worker {pid} killed"
                report.faults.append((at, what))
                log(f"soak: {at:.1f}s {what}")
            traffic.sleep_until(duration_s)
        finally:
            traffic.finish(report)
        check_acknowledged(oracle, traffic.writers, report)
        report.verify_rc, report.verify_output = flask_verify(env)
        report.workers_after = len(gunicorn.worker_pids())
        _, response = call(
            gunicorn.base_url, "GET", FACETS_PATH.format(org=ORG), headers=owner.headers
        )
        if response is None or response.status_code != 200:
            report.problems.append(f"facets after the soak: {response and response.status_code}")
    finally:
        if gunicorn is not None:
            gunicorn.stop()
        redis_server.stop()
        if oracle is not None:
            oracle.dispose()
        database.drop()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help=f"{LONG_S} s instead of {SHORT_S} s")
    parser.add_argument("--duration", type=float, help="seconds of traffic (overrides --long)")
    add_database_url(parser)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    duration = args.duration or (LONG_S if args.long else SHORT_S)
    with tempfile.TemporaryDirectory(prefix="facets-soak-") as tmp:
        report = run_soak(args.database_url, duration, Path(tmp), args.seed)
        print(report.summary())
        for failure in report.failures()[:50]:
            print(f"FAIL {failure}")
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
