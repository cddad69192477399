"""The admin benchmark, one command: ``python -m bench.admin [--orgs N] [--rounds R] [--smoke]``.

Bulk-loads many small orgs (orgs, projects and sandboxes with PostgreSQL ``COPY``, bypassing
the service layer and the unit of work, as ``bench.load`` does for sandboxes), then measures
side by side, in interleaved rounds on one app: the one full-table ``SELECT org_id, state,
project_id, count(*) FROM sandboxes GROUP BY 1, 2, 3`` (built by the recount's own
``cells_query``, every row fetched), ``flask facets rebuild`` and ``flask facets verify`` (in
process, through the CLI runner). The first round's rebuild starts from an empty Redis db.
Prints the medians, each command's ratio to the GROUP BY and the issue's targets.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

import psycopg
import redis as redis_lib

from bench import load
from bench.run import DEFAULT_DB_SERVER, DEFAULT_REDIS, app_config, git_describe
from facets import create_app
from facets.extensions import state
from models.recount import cells_query

STATES = ("running", "paused", "killed")
TARGET_RATIO = 3.0
STEPS = ("group_by", "rebuild", "verify")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.admin", description=__doc__.split("\n")[0])
    p.add_argument("--orgs", type=int, default=50_000)
    p.add_argument("--projects", type=int, default=3, help="projects per org")
    p.add_argument("--sandboxes", type=int, default=10, help="mean sandboxes per org")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server (its database is only used to connect); "
        f"default $BENCH_DATABASE_URL, else {DEFAULT_DB_SERVER}",
    )
    p.add_argument("--db-name", default="facets_bench_admin", help="the database it creates")
    p.add_argument(
        "--redis-url",
        default=None,
        help=f"a Redis db the bench may FLUSH (default $BENCH_REDIS_URL or {DEFAULT_REDIS})",
    )
    p.add_argument("--smoke", action="store_true", help="300 orgs, one round (CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.orgs, args.rounds = min(args.orgs, 300), 1
    args.database_url = (
        args.database_url or os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB_SERVER
    )
    args.redis_url = args.redis_url or os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS
    return args


def say(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def bulk_load(db_url: str, n_orgs: int, n_projects: int, mean_sandboxes: int) -> int:
    """COPY ``n_orgs`` orgs of ``n_projects`` projects and 0 to 2 x mean sandboxes each (5% of
    them in no project); returns the number of sandboxes."""
    rng = random.Random(load.SEED)
    stamp = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    orgs, projects, sandboxes = [], [], []
    for i in range(n_orgs):
        org = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        orgs.append(f"{org}\tadmin-{i:06d}\tAdmin bench {i}\t{rng.randint(0, 50)}\t{stamp}\n")
        homes = [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(n_projects)]
        projects.extend(f"{p}\t{org}\tp{k}\tProject {k}\t{stamp}\n" for k, p in enumerate(homes))
        for _ in range(rng.randint(0, 2 * mean_sandboxes)):
            home = rng.choice(homes) if homes and rng.random() >= 0.05 else "\\N"
            sid = uuid.UUID(int=rng.getrandbits(128), version=4).hex
            sandboxes.append(f"{sid}\t{org}\t{home}\t{rng.choice(STATES)}\t{stamp}\t{stamp}\n")
    tables = (
        ("orgs (id, slug, name, facet_version, created_at)", orgs),
        ("projects (id, org_id, key, name, created_at)", projects),
        ("sandboxes (id, org_id, project_id, state, created_at, updated_at)", sandboxes),
    )
    with psycopg.connect(load._libpq(db_url)) as conn, conn.cursor() as cur:
        for table, lines in tables:
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                for start in range(0, len(lines), load.COPY_CHUNK_ROWS):
                    copy.write("".join(lines[start : start + load.COPY_CHUNK_ROWS]))
        conn.commit()
    return len(sandboxes)


def time_group_by(app) -> tuple[float, float]:
    """Wall and client CPU seconds of the one full-table GROUP BY, every row fetched."""
    with app.app_context():
        db = state().db
        wall, cpu = time.perf_counter(), time.process_time()
        with db.snapshot_engine.connect() as conn, conn.begin():
            rows = conn.execute(cells_query(by_org=True)).all()
        assert rows, "the GROUP BY found no sandboxes"
        return time.perf_counter() - wall, time.process_time() - cpu


def time_command(app, name: str) -> tuple[float, float]:
    """Wall and client CPU seconds of ``flask facets <name>`` run in this process."""
    runner = app.test_cli_runner()
    wall, cpu = time.perf_counter(), time.process_time()
    result = runner.invoke(args=["facets", name])
    elapsed = time.perf_counter() - wall, time.process_time() - cpu
    if result.exit_code != 0:
        raise RuntimeError(f"flask facets {name} failed: {result.output[-2000:]}")
    return elapsed


def flush_redis(url: str) -> None:
    client = redis_lib.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def measure(app, rounds: int) -> dict[str, list[tuple[float, float]]]:
    timings: dict[str, list[tuple[float, float]]] = {step: [] for step in STEPS}
    for n in range(rounds):
        for step in STEPS:
            timings[step].append(
                time_group_by(app) if step == "group_by" else time_command(app, step)
            )
        say(
            f"  round {n + 1}: "
            + ", ".join(f"{step} {timings[step][-1][0]:.2f}s" for step in STEPS)
        )
    return timings


def summarize(timings: dict, n_orgs: int) -> dict:
    rows = {}
    for step, runs in timings.items():
        wall = statistics.median(w for w, _ in runs)
        rows[step] = {
            "median_s": wall,
            "runs_s": [round(w, 3) for w, _ in runs],
            "client_cpu_s": statistics.median(c for _, c in runs),
            "orgs_per_s": n_orgs / wall if wall else None,
        }
    base = rows["group_by"]["median_s"]
    for row in rows.values():
        row["ratio"] = row["median_s"] / base if base else None
    return rows


def render(results: dict) -> str:
    meta, rows = results["meta"], results["steps"]
    lines = [
        "== admin rebuild / verify benchmark ==",
        f"{meta['orgs']:,} orgs, {meta['projects']} projects each, {meta['sandboxes']:,} "
        f"sandboxes; git {meta['git']}; {meta['rounds']} rounds (medians)",
        "",
        "| step | median s | rounds s | client CPU s | orgs/s | / GROUP BY |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "group_by": "one full-table GROUP BY org_id, state, project_id",
        "rebuild": "flask facets rebuild",
        "verify": "flask facets verify",
    }
    for step, row in rows.items():
        lines.append(
            f"| {names[step]} | {row['median_s']:.2f} | "
            f"{', '.join(f'{r:.2f}' for r in row['runs_s'])} | {row['client_cpu_s']:.2f} | "
            f"{row['orgs_per_s']:,.0f} | {row['ratio']:.2f} |"
        )
    lines += ["", "Targets (issue 18)"]
    for name, bound, value, met in results["targets"]:
        lines.append(f"  {name:<28} <= {bound:<4} {value:6.2f}  {'met' if met else 'NOT MET'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if load.is_sqlite(args.database_url):
        raise SystemExit("bench.admin needs PostgreSQL (it bulk-loads with COPY)")
    flush_redis(args.redis_url)
    say(f"creating database {args.db_name} ...")
    db_url = load.create_database(args.database_url, args.db_name)
    app = create_app(app_config(db_url, args.redis_url))
    try:
        started = time.perf_counter()
        sandboxes = bulk_load(db_url, args.orgs, args.projects, args.sandboxes)
        loaded_s = time.perf_counter() - started
        say(f"loaded {args.orgs:,} orgs, {sandboxes:,} sandboxes in {loaded_s:.1f}s")
        load.vacuum_analyze(app)
        timings = measure(app, args.rounds)
    finally:
        with app.app_context():
            state().db.dispose()
            state().redis.close()
        load.drop_database(args.database_url, args.db_name)
        flush_redis(args.redis_url)
    steps = summarize(timings, args.orgs)
    results = {
        "meta": {
            "git": git_describe(),
            "orgs": args.orgs,
            "projects": args.projects,
            "sandboxes": sandboxes,
            "rounds": args.rounds,
        },
        "steps": steps,
        "targets": [
            (
                f"{step} / GROUP BY",
                TARGET_RATIO,
                steps[step]["ratio"],
                steps[step]["ratio"] <= TARGET_RATIO,
            )
            for step in ("rebuild", "verify")
        ],
    }
    print(render(results), end="")
    return results


if __name__ == "__main__":
    main()
