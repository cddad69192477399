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
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from facets import create_app
from facets.extensions import state
from models import Role, migrate
from models.services import accounts
from soak.oracle import Oracle
from soak.report import Report
from soak.servers import ROOT, Gunicorn, PrivateRedis, ScratchDatabase
from soak.traffic import FACETS_PATH, Caller, Reader, Writer, call

SHORT_S = 25
LONG_S = 300
ORG = "soak"
JWT_SECRET = "soak-jwt-secret-long-enough-for-hs256-signatures"
HIGH_LIMIT = "100000/second"
REDIS_DOWN_S = 0.5
BURST_S, QUIET_S = 0.4, 0.6
READERS = 3
REQUESTS_PER_SECOND_CAP = 150  # per reader thread: bounds the count whatever the speed
INITIAL_SANDBOXES = 24
JOIN_S = 15


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


def server_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """gunicorn's environment for a soak: this one without gunicorn's and flask's settings,
    the servers, the soak's JWT secret, budgets no soak reaches, and ``extra``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "FLASK_"))}
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": JWT_SECRET,
        "FACETS_RATE_LIMIT": HIGH_LIMIT,
        "READ_RATE_LIMIT": HIGH_LIMIT,
        "MUTATION_RATE_LIMIT": HIGH_LIMIT,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def app_config(env: dict[str, str]) -> dict[str, str]:
    """The app settings of a soak's gunicorn environment, for seeding in this process."""
    return {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "LOG_LEVEL")}


def seed_accounts(config: dict) -> tuple[uuid.UUID, Caller, Caller]:
    """The org, an owner and a member with API keys, through the service layer."""
    app = create_app(config)
    with app.app_context():
        try:
            callers = []
            with state().unit_of_work() as uow:
                org_id = accounts.create_org(uow, slug=ORG).id
            for name, role in (("owner", Role.OWNER), ("member", Role.MEMBER)):
                email = f"{name}@soak.example.com"
                with state().unit_of_work() as uow:
                    user = accounts.create_user(uow, email=email)
                    accounts.add_member(uow, org_slug=ORG, email=email, role=role)
                with state().unit_of_work() as uow:
                    key = accounts.create_api_key(uow, email=email).key
                callers.append(Caller(name, key, user.id, role is Role.OWNER))
        finally:
            state().db.dispose()
    return org_id, callers[0], callers[1]


def seed_projects(base_url: str, owner: Caller, member: Caller) -> list[str]:
    """Three projects (the member is in the first), and some sandboxes in each, over HTTP."""
    api = f"/api/v1/org/{ORG}"

    def ok(method: str, path: str, body: dict | None = None) -> dict | None:
        record, response = call(base_url, method, api + path, json=body, headers=owner.headers)
        if response is None or response.status_code >= 300:
            raise RuntimeError(f"seeding {method} {path}: {record}")
        return response.json() if response.content else None

    projects = [
        ok("POST", "/projects", {"key": k, "name": k.title()})["id"]
        for k in ("alpha", "beta", "gamma")
    ]
    ok("POST", f"/projects/{projects[0]}/members", {"email": "member@soak.example.com"})
    for i in range(INITIAL_SANDBOXES):
        project = [*projects, None][i % 4]
        sandbox = ok("POST", "/sandboxes", {"project_id": project})
        if i % 3 == 1:
            ok("PATCH", f"/sandboxes/{sandbox['id']}", {"state": ("paused", "killed")[i % 2]})
    return projects


def flask_verify(env: dict[str, str]) -> tuple[int, str]:
    """``flask facets verify`` with the server's environment."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "facets", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, "\n".join(lines[-5:])


def check_acknowledged(oracle: Oracle, writers: list[Writer], report: Report) -> None:
    """Every sandbox's last acknowledged mutation is what SQL holds."""
    final: dict[uuid.UUID, dict | None] = {}
    for writer in writers:
        report.acknowledged += len(writer.result.acknowledged)
        report.uncertain += len(writer.result.uncertain)
        report.unacknowledged_creates += writer.result.unacknowledged_creates
        report.problems += writer.result.problems
        for mutation in writer.result.acknowledged:
            if mutation.sandbox_id not in writer.result.uncertain:
                final[mutation.sandbox_id] = mutation.sandbox
    rows = oracle.sandboxes(list(final))
    for sandbox_id, sandbox in final.items():
        row = rows.get(sandbox_id)
        if sandbox is None and row is not None:
            report.lost.append(f"sandbox {sandbox_id}: deletion acknowledged, still in SQL {row}")
        elif sandbox is not None and row != (sandbox["state"], sandbox["project_id"]):
            report.lost.append(f"sandbox {sandbox_id}: acknowledged {sandbox}, SQL has {row}")


def burst_clock(allowed: threading.Event, stop: threading.Event) -> None:
    """Let writers write for ``BURST_S``, then hold them for ``QUIET_S``, until stopped."""
    while not stop.is_set():
        allowed.set()
        stop.wait(BURST_S)
        allowed.clear()
        stop.wait(QUIET_S)
    allowed.set()


def run_soak(
    server_url: str, duration_s: float, work_dir: Path, seed: int = 0, log=print
) -> Report:
    """Set everything up, run the traffic and the faults, judge, and tear everything down."""
    report = Report(duration_s)
    database = ScratchDatabase(server_url)
    redis_server = PrivateRedis(work_dir / "redis")
    prometheus_dir = work_dir / "prometheus"
    prometheus_dir.mkdir(parents=True, exist_ok=True)
    database.create()
    gunicorn = oracle = None
    try:
        migrate.upgrade(database.url)
        redis_server.start()
        env = server_env(
            database.url, redis_server.url, PROMETHEUS_MULTIPROC_DIR=str(prometheus_dir)
        )
        org_id, owner, member = seed_accounts(app_config(env))
        gunicorn = Gunicorn(env, work_dir / "gunicorn.log")
        gunicorn.start()
        log(f"soak: gunicorn {gunicorn.base_url}, redis {redis_server.url}, db {database.name}")
        projects = seed_projects(gunicorn.base_url, owner, member)
        oracle = Oracle(database.url, org_id)

        stop, allowed = threading.Event(), threading.Event()
        max_reads = int(duration_s * REQUESTS_PER_SECOND_CAP) + 1
        readers = [
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
        ]
        writers = [
            Writer(
                base_url=gunicorn.base_url,
                org=ORG,
                caller=owner,
                projects=[*projects, None],
                allowed=allowed,
                stop=stop,
                max_requests=max_reads,
                seed=seed * 100 + 50,
            ),
            Writer(
                base_url=gunicorn.base_url,
                org=ORG,
                caller=member,
                projects=[projects[0], None],
                allowed=allowed,
                stop=stop,
                max_requests=max_reads,
                seed=seed * 100 + 51,
            ),
        ]
        clock = threading.Thread(target=burst_clock, args=(allowed, stop), daemon=True)
        threads = [clock, *readers, *writers]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            for at, what in fault_schedule(duration_s):
                time.sleep(max(0.0, started + at - time.monotonic()))
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
            time.sleep(max(0.0, started + duration_s - time.monotonic()))
        finally:
            stop.set()
            for thread in threads:
                thread.join(JOIN_S)
        for reader in readers:
            result = reader.result
            report.calls += result.calls
            report.verified += result.verified
            report.unverifiable += result.unverifiable
            report.not_modified += result.not_modified
            report.mismatches += result.mismatches
            report.problems += result.problems
        for writer in writers:
            report.calls += writer.result.calls
        report.problems += [f"{t.name} still running" for t in threads if t.is_alive()]
        check_acknowledged(oracle, writers, report)
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
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server URL; the soak creates and drops its own database there",
    )
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
