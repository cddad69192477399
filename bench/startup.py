"""Admin command start-up: process CPU of ``flask facets verify --org X`` and ``flask --help``.

``python -m bench.startup`` (``--help`` for the options). On real PostgreSQL and Redis it creates
(and drops) its own database with one org, then runs ``--rounds`` rounds, each running, one
after the other, ``flask facets verify --org X``, ``flask --help`` and the bare import of the
libraries the verify runs on (``LIBRARIES``): a slow spell of the shared machine then hits all
three alike. Each figure is a child process's user+sys CPU (``getrusage``); reported as medians
and ranges, with verify's ratio to the bare import measured in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench import load
from bench.cpu import children_s
from bench.http import ROOT
from bench.run import JWT_SECRET, flush_redis

FLASK = str(Path(sys.executable).with_name("flask"))
LIBRARIES = (
    "flask, sqlalchemy.orm, sqlalchemy.dialects.postgresql, redis, psycopg, prometheus_client"
)
ORG = "startup"
TARGET_S = 0.7  # issue 18's bound on verify --org
TARGET_S = 0.7


def cpu_of(argv: list[str], env: dict[str, str]) -> float:
    """User+sys CPU seconds of one run of ``argv`` (which must succeed)."""
    before = children_s()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    return children_s() - before


def summary(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.2f} ({min(seconds):.2f}-{max(seconds):.2f})"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db-name", default="facets_bench_startup")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/8", help="a db it may FLUSH")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    db_url = load.create_database(args.database_url, args.db_name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "DATABASE_URL": db_url,
        "REDIS_URL": args.redis_url,
        "JWT_SECRET": JWT_SECRET,
    }
    commands = {
        "flask facets verify --org X": [FLASK, "facets", "verify", "--org", ORG],
        "flask --help": [FLASK, "--help"],
        "import of its libraries": [sys.executable, "-c", f"import {LIBRARIES}"],
    }
    runs: dict[str, list[float]] = {name: [] for name in commands}
    try:
        flush_redis(args.redis_url)
        subprocess.run(
            [FLASK, "orgs", "create", ORG], cwd=ROOT, env=env, check=True, capture_output=True
        )
        for _ in range(args.rounds):
            for name, command in commands.items():
                runs[name].append(cpu_of(command, env))
    finally:
        load.drop_database(args.database_url, args.db_name)
        flush_redis(args.redis_url)
    print(f"== admin start-up == process CPU s, {args.rounds} rounds: median (range)")
    for name, seconds in runs.items():
        print(f"  {name:32}{summary(seconds):>20}")
    verify, libraries = runs["flask facets verify --org X"], runs["import of its libraries"]
    ratio = statistics.median(v / lib for v, lib in zip(verify, libraries, strict=True))
    print(f"  verify / import of its libraries, median of the rounds' ratios: {ratio:.2f}")
    met = statistics.median(verify) <= TARGET_S
    print(f"  verify <= {TARGET_S} s (issue 18): {'met' if met else 'NOT MET'}")
    return runs


if __name__ == "__main__":
    main()
