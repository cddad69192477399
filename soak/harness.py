"""What every soak shares: the seeded org and callers, the client threads with the burst
clock, the server environment, and the judging of acknowledged writes and of
``flask facets verify``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from facets import create_app
from facets.extensions import state
from models import Role
from models.services import accounts
from soak.oracle import Oracle
from soak.report import Report
from soak.servers import ROOT
from soak.traffic import Caller, Writer, call

ORG = "soak"
JWT_SECRET = "soak-jwt-secret-long-enough-for-hs256-signatures"
HIGH_LIMIT = "100000/second"
BURST_S, QUIET_S = 0.4, 0.6
REQUESTS_PER_SECOND_CAP = 150  # per client thread: bounds the count whatever the speed
INITIAL_SANDBOXES = 24
JOIN_S = 15


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """The ``--database-url`` option of every soak command."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server URL; the soak creates and drops its own database there",
    )


def server_env(
    database_url: str, redis_url: str, prometheus_dir: Path | None = None, **extra: str
) -> dict[str, str]:
    """The environment of the soak's gunicorn (and of its ``flask facets verify``): this one
    without gunicorn's and flask's settings, the servers, the soak's JWT secret, budgets no
    soak reaches, and ``extra``. Without ``prometheus_dir`` gunicorn.conf.py makes its own."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "FLASK_"))},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": JWT_SECRET,
        "FACETS_RATE_LIMIT": HIGH_LIMIT,
        "READ_RATE_LIMIT": HIGH_LIMIT,
        "MUTATION_RATE_LIMIT": HIGH_LIMIT,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    if prometheus_dir is not None:
        prometheus_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus_dir)
    else:
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def app_config(env: dict[str, str]) -> dict[str, str]:
    """The part of ``env`` an in-process app of the soak needs."""
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


class Traffic:
    """The soak's client threads and the burst clock, started together; ``finish`` stops
    them and adds what they saw to the report."""

    def __init__(self, readers, writers, stop, allowed) -> None:
        self.readers, self.writers, self.stop = readers, writers, stop
        clock = threading.Thread(target=burst_clock, args=(allowed, stop), daemon=True)
        self.threads = [clock, *readers, *writers]
        self.started = time.monotonic()

    @classmethod
    def start(cls, *, readers, writers, stop, allowed) -> Traffic:
        traffic = cls(readers, writers, stop, allowed)
        for thread in traffic.threads:
            thread.start()
        return traffic

    def sleep_until(self, at_s: float) -> None:
        time.sleep(max(0.0, self.started + at_s - time.monotonic()))

    def finish(self, report: Report) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(JOIN_S)
        for reader in self.readers:
            result = reader.result
            report.calls += result.calls
            report.verified += result.verified
            report.unverifiable += result.unverifiable
            report.not_modified += result.not_modified
            report.mismatches += result.mismatches
            report.problems += result.problems
        for writer in self.writers:
            report.calls += writer.result.calls
        report.problems += [f"{t.name} still running" for t in self.threads if t.is_alive()]
