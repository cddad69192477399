"""The bench's data: a dedicated database, orgs of given sizes, and their callers.

Orgs, users, memberships, projects, project members and API keys are created through the
service layer inside ``state().unit_of_work()``. Sandboxes are NOT: loading a million rows one
unit of work at a time would take hours, so they are bulk-loaded straight into the
``sandboxes`` table (PostgreSQL ``COPY``; SQLite ``executemany`` for the smoke run). That load
bypasses the unit of work: no events, no after-commit hooks, no ``facet_version`` bump. The
counter cache is flushed afterwards, so every org starts cold and its first read recounts.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from flask import Flask

from facets.config import normalize_database_url
from facets.extensions import state
from models import Role, Sandbox, migrate
from models.services import accounts, projects
from models.services.common import lock_access

SEED = 20240501
STATE_WEIGHTS = {"running": 20, "paused": 10, "killed": 70}
NO_PROJECT_SHARE = 0.05
ZIPF_S = 1.1
MEMBER_PROJECT_COUNT = 10
WRITE_TARGETS = 40
COPY_CHUNK_ROWS = 50_000
BULK_LOAD_NOTE = (
    "sandboxes bulk-loaded (COPY / executemany) bypassing the unit of work: "
    "no events, no hooks, no facet_version bump; Redis flushed before measuring"
)


@dataclass
class OrgData:
    """One loaded org and what the bench needs to call it."""

    slug: str
    org_id: uuid.UUID
    sandboxes: int
    project_ids: list[uuid.UUID]  # by rank: the first is the biggest
    owner_key: str
    member_key: str
    member_projects: list[uuid.UUID]
    write_targets: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (id, state)
    load_s: float = 0.0


# --- the database -----------------------------------------------------------------------------


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def bench_database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url`` (SQLite: unchanged)."""
    if is_sqlite(server_url):
        return server_url
    url = make_url(normalize_database_url(server_url)).set(database=name)
    return url.render_as_string(hide_password=False)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(server_url: str, name: str) -> str:
    """Drop and create database ``name`` on that server, migrate it; returns its URL."""
    url = bench_database_url(server_url, name)
    if not is_sqlite(url):
        admin = _libpq(bench_database_url(server_url, "postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    migrate.upgrade(url)
    return url


def drop_database(server_url: str, name: str) -> None:
    """Drop the bench database (SQLite: the caller removes its file)."""
    if is_sqlite(server_url):
        return
    admin = _libpq(bench_database_url(server_url, "postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- orgs through the service layer ----------------------------------------------------------


def _project_weights(n: int) -> list[float]:
    return [1 / (rank**ZIPF_S) for rank in range(1, n + 1)]


def member_project_ranks(n_projects: int, k: int = MEMBER_PROJECT_COUNT) -> list[int]:
    """Which projects (0-based rank) the member sees: spread from the biggest to the smallest."""
    if n_projects <= k:
        return list(range(n_projects))
    ranks = sorted({round((n_projects - 1) * (i / (k - 1)) ** 2) for i in range(k)})
    extra = (r for r in range(n_projects) if r not in ranks)
    while len(ranks) < k:
        ranks.append(next(extra))
    return sorted(ranks)


def create_org(app: Flask, slug: str, n_projects: int) -> OrgData:
    """An org with an owner, a member of a few projects, ``n_projects`` projects and two keys."""
    owner_email, member_email = f"owner@{slug}.bench", f"member@{slug}.bench"
    with app.app_context():
        st = state()
        with st.unit_of_work() as uow:
            org = accounts.create_org(uow, slug=slug, name=f"Bench {slug}")
            for email, role in ((owner_email, Role.OWNER), (member_email, Role.MEMBER)):
                accounts.create_user(uow, email=email)
                accounts.add_member(uow, org_slug=slug, email=email, role=role)
            org_id = org.id
        with st.unit_of_work() as uow:
            owner = accounts.get_user(uow, email=owner_email)
            access = lock_access(uow, org_slug=slug, user_id=owner.id)
            made = [
                projects.create_project(
                    uow, access=access, key=f"p{rank:04d}", name=f"Project {rank:04d}"
                ).id
                for rank in range(n_projects)
            ]
            member_projects = [made[r] for r in member_project_ranks(n_projects)]
            for project_id in member_projects:
                projects.add_project_member(
                    uow, access=access, project_id=project_id, email=member_email
                )
        with st.unit_of_work() as uow:
            owner_key = accounts.create_api_key(uow, email=owner_email).key
            member_key = accounts.create_api_key(uow, email=member_email).key
    return OrgData(slug, org_id, 0, made, owner_key, member_key, member_projects)


# --- sandboxes in bulk -----------------------------------------------------------------------


def sandbox_rows(org: OrgData, n: int, rng: random.Random) -> Iterator[tuple]:
    """``n`` rows ``(id hex, project id or None, state, created_at)``, skewed over projects."""
    cum_projects = list(itertools.accumulate(_project_weights(len(org.project_ids))))
    homes = rng.choices(org.project_ids, cum_weights=cum_projects, k=n)
    states = rng.choices(list(STATE_WEIGHTS), list(STATE_WEIGHTS.values()), k=n)
    no_project = NO_PROJECT_SHARE
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=90) / max(n, 1)
    for i in range(n):
        project = None if rng.random() < no_project else homes[i]
        yield (f"{rng.getrandbits(128):032x}", project, states[i], start + step * i)


def load_sandboxes(app: Flask, org: OrgData, n: int, seed: int = SEED) -> None:
    """Bulk-load ``n`` sandboxes of ``org`` (bypassing the unit of work, see the module doc)."""
    rng = random.Random(f"{seed}:{org.slug}")
    started = time.perf_counter()
    with app.app_context():
        db = state().db
        if db.is_sqlite:
            _executemany(db, org, sandbox_rows(org, n, rng))
        else:
            _copy(db.url, org, sandbox_rows(org, n, rng))
    org.sandboxes = n
    org.load_s = time.perf_counter() - started


def _remember_target(org: OrgData, sandbox_id: uuid.UUID, state_: str) -> None:
    if state_ != "killed" and len(org.write_targets) < WRITE_TARGETS:
        org.write_targets.append((sandbox_id, state_))


def _copy(url: str, org: OrgData, rows: Iterator[tuple]) -> None:
    org_hex = org.org_id.hex
    with psycopg.connect(_libpq(url)) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY sandboxes (id, org_id, project_id, state, created_at, updated_at) FROM STDIN"
        ) as copy:
            lines: list[str] = []
            for sid, project, state_, created in rows:
                stamp = created.isoformat()
                pid = project.hex if project is not None else "\\N"
                lines.append(f"{sid}\t{org_hex}\t{pid}\t{state_}\t{stamp}\t{stamp}\n")
                _remember_target(org, uuid.UUID(sid), state_)
                if len(lines) >= COPY_CHUNK_ROWS:
                    copy.write("".join(lines))
                    lines.clear()
            if lines:
                copy.write("".join(lines))
        conn.commit()


def _executemany(db, org: OrgData, rows: Iterator[tuple]) -> None:
    batch = []
    for sid, project, state_, created in rows:
        sandbox_id = uuid.UUID(sid)
        batch.append(
            {
                "id": sandbox_id,
                "org_id": org.org_id,
                "project_id": project,
                "state": state_,
                "created_at": created,
                "updated_at": created,
            }
        )
        _remember_target(org, sandbox_id, state_)
    with db.write_engine.begin() as conn:
        conn.execute(insert(Sandbox.__table__), batch)


def vacuum_analyze(app: Flask) -> float:
    """VACUUM ANALYZE the bench database (ANALYZE on SQLite); returns the seconds it took."""
    started = time.perf_counter()
    with app.app_context():
        db = state().db
        with db.autocommit_engine.connect() as conn:
            conn.execute(text("ANALYZE" if db.is_sqlite else "VACUUM ANALYZE"))
            conn.commit()
    return time.perf_counter() - started
