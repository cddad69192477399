"""One hot org's writers against two or more servers side by side: what a change costs a write.

``python -m bench.hot_writers --variant A --variant B ...`` starts one gunicorn (as
``gunicorn.conf.py`` ships it) per variant on one database and one Redis, seeds the hot org of
``bench.traffic``, and runs ``--rounds`` rounds; in each, ``--writers`` clients toggle
sandboxes of the hot org against each server in turn (the order reversed every other round),
for ``--seconds`` each. A variant is ``[CHECKOUT|]NAME=VALUE;NAME=VALUE``: the environment
given to its server, and optionally another checkout to serve (a ``git worktree`` of an
earlier commit), e.g. ``--variant GUNICORN_WORKER_CLASS=gthread`` or ``--variant
/tmp/before|``. Reported per variant: medians over the rounds of the committed writes/s, the
write p50, and the CPU a write costs the gunicorn workers and the whole machine (``bench.cpu``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from bench import load
from bench.http import ROOT, stop_gunicorn
from bench.run import JWT_SECRET, flush_redis
from bench.traffic import Server, combine_rounds, phase, seed_hot, start_server
from facets import create_app
from facets.extensions import state

WARM_UP_S = 4  # every worker has loaded the app before the first round


@dataclass(frozen=True)
class Variant:
    name: str
    root: Path
    env: dict[str, str]


def parse_variant(spec: str) -> Variant:
    """``[CHECKOUT|]NAME=VALUE;...`` (see the module docstring)."""
    checkout, _, settings = spec.rpartition("|")
    env = dict(kv.split("=", 1) for kv in settings.split(";") if kv)
    return Variant(spec, Path(checkout) if checkout else ROOT, env)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m bench.hot_writers", description=__doc__.split("\n")[0]
    )
    p.add_argument("--variant", action="append", required=True, help="[CHECKOUT|]NAME=VALUE;...")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db-name", default="facets_hot_writers")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="a db it may FLUSH")
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    variants = [parse_variant(spec) for spec in args.variant]
    flush_redis(args.redis_url)
    db_url = load.create_database(args.database_url, args.db_name)
    config = {"DATABASE_URL": db_url, "REDIS_URL": args.redis_url, "JWT_SECRET": JWT_SECRET}
    rounds: dict[str, list[dict]] = {v.name: [] for v in variants}
    servers: list[tuple[Variant, Server]] = []
    procs = []
    try:
        app = create_app({**config, "LOG_LEVEL": "WARNING"})
        hot = seed_hot(app)
        with app.app_context():
            state().db.dispose()
        for n, variant in enumerate(variants):
            log = Path(args.out) / f"hot_writers_{n}.log"
            proc, server = start_server({**config, **variant.env}, log, root=variant.root)
            procs.append(proc)
            servers.append((variant, server))
        time.sleep(WARM_UP_S)
        for r in range(args.rounds):
            for variant, server in servers if r % 2 == 0 else servers[::-1]:
                done = phase(server, args.writers, args.seconds, [], 0.0, 0, hot=hot)
                rounds[variant.name].append(done)
    finally:
        for proc in procs:
            stop_gunicorn(proc)
        load.drop_database(args.database_url, args.db_name)
        flush_redis(args.redis_url)
    print(
        f"== hot-org writers side by side == {args.writers} writers, {args.rounds} rounds of "
        f"{args.seconds:g} s, medians"
    )
    heading = f"{'writes/s':>10}{'p50 ms':>8}{'app us/write':>14}{'machine us/write':>18}"
    print(f"{'variant':44}{heading}")
    results = {}
    for variant in variants:
        done = rounds[variant.name]
        combined = combine_rounds(done)
        results[variant.name] = figures = {
            "writes_per_s": combined["hot_writes_ok_per_s"],
            "p50_ms": combined["hot_writes"].get("p50_ms"),
            "app_us": combined["cpu_us_per_request"]["app"],
            "machine_us": combined["cpu_us_per_request"]["machine"],
            "rounds_writes_per_s": [d["hot_writes_ok_per_s"] for d in done],
        }
        print(
            f"{variant.name[-44:]:44}{figures['writes_per_s']!s:>10}{figures['p50_ms']!s:>8}"
            f"{figures['app_us']!s:>14}{figures['machine_us']!s:>18}"
        )
    return results


if __name__ == "__main__":
    main()
