"""The facets benchmark, one command: ``python -m bench.run [--sizes ..] [--requests N] [--smoke]``.

Loads a dedicated database (see ``bench.load``), then measures in one run: in-process reads per
org size (``bench.inprocess``), PATCH with and without the cache hook, Redis memory per org,
a cProfile of warm owner reads, bare round trips on the app's drivers (``bench.roundtrip``),
and warm facets vs the floor under gunicorn + wrk
(``bench.http``). Prints tables with ratios; writes ``bench/results/latest.json`` and
``bench/results/latency.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_lib

from bench import http, inprocess, load, roundtrip, wsgi
from bench.floor import register_floor
from bench.plot import plot_latency
from facets import create_app
from facets.extensions import state

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/8"
JWT_SECRET = "bench-jwt-secret-that-is-long-enough-for-hs256"
NO_LIMIT = "1000000/second"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="sandboxes per big org, comma-separated (default: %(default)s)",
    )
    p.add_argument("--projects", type=int, default=1000, help="projects per big org")
    p.add_argument("--small-projects", type=int, default=10)
    p.add_argument("--small-sandboxes", type=int, default=1000)
    p.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="timed requests per warm scenario and size (default: %(default)s)",
    )
    p.add_argument(
        "--cold-requests",
        type=int,
        default=None,
        help="timed requests per cold scenario and size (default: requests/10, >= 20)",
    )
    p.add_argument("--block", type=int, default=25, help="requests per interleaved block")
    p.add_argument(
        "--write-requests",
        type=int,
        default=None,
        help="timed PATCHes per variant (default: requests/4)",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server (its database is only used to connect) or sqlite:///"
        "file; default $BENCH_DATABASE_URL, $DATABASE_URL, else the local server",
    )
    p.add_argument("--db-name", default="facets_bench", help="the database the bench creates")
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    p.add_argument(
        "--redis-url",
        default=None,
        help=f"a Redis db the bench may FLUSH (default $BENCH_REDIS_URL or {DEFAULT_REDIS})",
    )
    p.add_argument("--http-seconds", type=float, default=5.0)
    p.add_argument("--http-rounds", type=int, default=5)
    p.add_argument("--http-connections", type=int, default=8)
    p.add_argument("--no-http", action="store_true", help="skip the gunicorn + wrk leg")
    p.add_argument("--profile-requests", type=int, default=500)
    p.add_argument(
        "--round-trips",
        type=int,
        default=1000,
        help="bare SELECT 1 / PING calls per measure (default: %(default)s)",
    )
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results directory")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes and few requests (CI); wrk and the plot only if available",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes = "300,3000" if args.sizes == p.get_default("sizes") else args.sizes
        args.projects = min(args.projects, 12)
        args.small_sandboxes = min(args.small_sandboxes, 100)
        args.requests = min(args.requests, 8)
        args.block = min(args.block, 5)
        args.cold_requests = args.cold_requests or 2
        args.http_seconds, args.http_rounds = min(args.http_seconds, 1.0), 1
        args.http_connections = min(args.http_connections, 4)
        args.profile_requests = min(args.profile_requests, 10)
        args.round_trips = min(args.round_trips, 20)
        args.db_name = args.db_name if args.db_name != "facets_bench" else "facets_bench_smoke"
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.cold_requests = args.cold_requests or max(20, args.requests // 10)
    args.write_requests = args.write_requests or max(6 if args.smoke else 20, args.requests // 4)
    args.database_url = (
        args.database_url
        or os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or DEFAULT_DB_SERVER
    )
    args.redis_url = args.redis_url or os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS
    return args


def say(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "facets", "models"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("+dirty(facets/models)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def app_config(db_url: str, redis_url: str) -> dict:
    """Production defaults, except rate limits so high they never trigger (still evaluated)."""
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": JWT_SECRET,
        "LOG_LEVEL": "INFO",
        "RATE_LIMITS_ENABLED": True,
        "FACETS_RATE_LIMIT": NO_LIMIT,
        "READ_RATE_LIMIT": NO_LIMIT,
        "MUTATION_RATE_LIMIT": NO_LIMIT,
    }


def human(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1000)):
        if n >= div and n % (div // 10 or 1) == 0:
            v = n / div
            return f"{v:g}{unit}"
    return str(n)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_floors(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def fmt_cpu(us: float | None) -> str:
    return "-" if us is None else f"{us:.0f}"


def fmt_ms(us: float) -> str:
    if us is None or math.isnan(us):
        return "-"
    return f"{us / 1000:.3f}" if us < 10_000 else f"{us / 1000:.1f}"


def read_ratios(row: dict) -> dict[str, float | None]:
    s = {k: v["median_us"] for k, v in row["stats"].items()}
    return {
        "owner warm / floor": ratio(s["owner_warm"], s["floor"]),
        "member warm / floor": ratio(s["member_warm"], s["floor"]),
        "304 / floor": ratio(s["owner_304"], s["floor"]),
        "owner warm / awaited limit": ratio(s["owner_warm"], s["owner_awaited"]),
        "no-SQL owner warm / floor": ratio(s["owner_no_sql"], s["floor"]),
        "no-IO owner warm / floor": ratio(s["owner_no_io"], s["floor"]),
        "no-IO 304 / floor": ratio(s["owner_304_no_io"], s["floor"]),
        "owner warm / raw": ratio(s["owner_warm"], s["raw_owner"]),
        "owner redis / raw": ratio(s["owner_redis"], s["raw_owner"]),
        "member warm / raw": ratio(s["member_warm"], s["raw_member"]),
        "owner cold / warm": ratio(s["owner_cold"], s["owner_warm"]),
        "owner cold / redis": ratio(s["owner_cold"], s["owner_redis"]),
        "member cold / warm": ratio(s["member_cold"], s["member_warm"]),
        "member warm / small-org warm": ratio(s["member_warm"], s["small_warm"]),
        "after a write / unchanged": ratio(s["redis_after_write"], s["redis_unchanged"]),
    }


def floor_parts(row: dict) -> dict[str, float | None]:
    """A warm read and a 304 of one org in floors, split by the bench knobs of the same rounds.

    Each request's parts add up to its ratio to the floor: the framework (1 by definition), the
    facets' own work (the no-round-trip knob over the floor) and the round trips (the rest;
    for the warm read, the SQL statement and the rate-limit hit apart, by the no-SQL knob).
    """
    s = {k: v["median_us"] for k, v in row["stats"].items()}
    floor = s["floor"]

    def share(a: str, b: str) -> float | None:
        return ratio(s[a] - s[b], floor)

    return {
        "warm: framework (the floor)": 1.0,
        "warm: facets' own work (no-IO knob - floor)": share("owner_no_io", "floor"),
        "warm: rate-limit hit (no-SQL knob - no-IO knob)": share("owner_no_sql", "owner_no_io"),
        "warm: SQL statement (warm - no-SQL knob)": share("owner_warm", "owner_no_sql"),
        "warm: total = owner warm / floor": ratio(s["owner_warm"], floor),
        "304: facets' own work (no-IO knob - floor)": share("owner_304_no_io", "floor"),
        "304: both round trips (304 - no-IO knob)": share("owner_304", "owner_304_no_io"),
        "304: total = 304 / floor": ratio(s["owner_304"], floor),
    }


# The CPU table's columns: part (``bench.cpu.PARTS``), heading, width.
CPU_COLUMNS = (
    ("app", "app", 5),
    ("postgres", "PostgreSQL", 12),
    ("redis", "Redis", 8),
    ("load_generator", "wrk", 8),
    ("machine", "whole machine", 15),
    ("steal", "stolen", 8),
)


def render_http(h: dict, title: str) -> list[str]:
    """One gunicorn + wrk measure: req/s and latency, their ratios, CPU per request."""
    f, fl = h["facets"], h["floor"]
    lines = [title, f"  {'':18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}"]
    for name, d in (("small facets warm", f), ("floor", fl)):
        lines.append(
            f"  {name:18}{(d['rps'] or 0):>10.0f}{fmt_ms(d['p50_us']):>10}"
            f"{fmt_ms(d['p99_us']):>10}{d['non_2xx']:>9}"
        )
    rounds = ", ".join(f"{x:.2f}" for x in h["round_ratios"])
    lines.append(
        f"  facets / floor req/s, median of the rounds' ratios: "
        f"{fmt_ratio(h['ratio'])} (rounds: {rounds}); "
        f"p50 facets / floor: {fmt_ratio(ratio(f['p50_us'], fl['p50_us']))}"
    )
    lines.append(
        f"  {'CPU per request, us (medians of the rounds):':46}"
        + "".join(f"{head:>{width}}" for _, head, width in CPU_COLUMNS)
    )
    for name, d in (("small facets warm", f), ("floor", fl)):
        lines.append(
            f"    {name:44}"
            + "".join(f"{fmt_cpu(d['cpu_us'][part]):>{width}}" for part, _, width in CPU_COLUMNS)
        )
    lines.append(
        f"  whole-machine CPU per request, facets / floor: "
        f"{fmt_ratio(h['machine_cpu_ratio'])} (median of the rounds' ratios)"
    )
    lines.append("")
    return lines


def no_sql_knob_problems(shipped: dict, knob: dict) -> list[str]:
    """What says the gunicorn no-SQL knob did not take: PostgreSQL working for its facets
    requests at more than half the rate it does for the shipped ones."""
    as_shipped = shipped["facets"]["cpu_us"]["postgres"]
    with_knob = knob["facets"]["cpu_us"]["postgres"]
    if as_shipped is None or with_knob is None or with_knob <= as_shipped / 2:
        return []
    return [
        f"gunicorn no-SQL knob: PostgreSQL spent {with_knob:.0f} us per facets request, "
        f"{as_shipped:.0f} us as shipped; the statements were not answered from memory"
    ]


def render(results: dict) -> str:
    """The stdout report."""
    lines: list[str] = []
    meta = results["meta"]
    rows = results["reads"]
    lines.append("== facets benchmark ==")
    lines.append(
        f"git {meta['git']}  {meta['started']}  python {meta['python']}  db {meta['database']}"
        f"  redis {meta['redis']}  load avg at start {meta['loadavg_start']}"
        f"  at end {meta.get('loadavg_end')}"
    )
    lines.append(f"NOTE: {load.BULK_LOAD_NOTE}")
    lines.append(
        f"NOTE: rate limits on at {NO_LIMIT} (evaluated, never hit); "
        "request log at INFO written to /dev/null in-process, to a file under gunicorn"
    )
    lines.append("")
    loads = ", ".join(
        f"{o['slug']} {o['sandboxes']:,} sandboxes / {o['projects']} projects in {o['load_s']:.1f}s"
        for o in results["orgs"]
    )
    lines.append(f"Load: {loads}; VACUUM ANALYZE {results['vacuum_s']:.1f}s")
    lines.append("")
    heads = [f"{human(r['sandboxes'])}/{r['projects']}p" for r in rows]
    lines.append("In-process latency, ms: median (p99) [n]; columns = sandboxes/projects")
    width = 26
    lines.append("scenario".ljust(16) + "".join(h.rjust(width) for h in heads))
    for name in inprocess.READ_SCENARIOS:
        cells = []
        for r in rows:
            st = r["stats"][name]
            err = f" E{st['errors']}" if st["errors"] else ""
            cells.append(f"{fmt_ms(st['median_us'])} ({fmt_ms(st['p99_us'])}) [{st['n']}]{err}")
        lines.append(name.ljust(16) + "".join(c.rjust(width) for c in cells))
    lines.append("")
    lines.append("Ratios of medians (same interleaved rounds)")
    lines.append("ratio".ljust(30) + "".join(h.rjust(14) for h in heads))
    for key in read_ratios(rows[0]):
        cells = "".join(fmt_ratio(read_ratios(r)[key]).rjust(14) for r in rows)
        lines.append(key.ljust(30) + cells)
    for key, value in results["scaling"].items():
        lines.append(f"{key}: {fmt_ratio(value)}")
    lines.append("")
    lines.append(
        "Where a warm read and a 304 go, in floors (medians of the same rounds; the parts of "
        "each add up to its total; the warm target leaves 1.0 beyond the framework, the 304 "
        "one 0.5)"
    )
    lines.append("part".ljust(50) + "".join(h.rjust(12) for h in heads))
    parts = [floor_parts(r) for r in rows]
    for key in parts[0]:
        lines.append(key.ljust(50) + "".join(fmt_floors(p[key]).rjust(12) for p in parts))
    lines.append("")
    w = results.get("writes")
    if w:
        a, b = w["stats"]["patch_with_hook"], w["stats"]["patch_no_hook"]
        lines.append(f"Writes (PATCH running<->paused on {w['org']}), ms: median (p99) [n]")
        lines.append(
            f"  with cache hook    {fmt_ms(a['median_us'])} ({fmt_ms(a['p99_us'])}) "
            f"[{a['n']}] errors {a['errors']}"
        )
        lines.append(
            f"  hooks cleared      {fmt_ms(b['median_us'])} ({fmt_ms(b['p99_us'])}) "
            f"[{b['n']}] errors {b['errors']}"
        )
        lines.append(f"  with / without    {fmt_ratio(ratio(a['median_us'], b['median_us']))}")
        lines.append("")
    t = results.get("round_trips")
    if t:
        lines.append(
            "Bare round trips on the app's drivers: median latency back to back / after "
            f"{t['idle_gap_us'] / 1000:g} ms of server idleness; client CPU per call"
        )
        for name, what in (("database", "SELECT 1"), ("redis", "PING")):
            r = t[name]
            lines.append(
                f"  {what:10} {fmt_ms(r['back_to_back_us'])} / {fmt_ms(r['after_idle_us'])} ms;"
                f" CPU {fmt_ms(r['cpu_us'])} ms"
            )
        lines.append("")
    h = results.get("http")
    if h and "facets" in h:
        lines += render_http(
            h,
            f"gunicorn + wrk (keep-alive, {h['connections']} connections, {h['threads']} threads, "
            f"{h['rounds']} x {h['seconds']}s each, medians over rounds; wrk shares the 2 cores)",
        )
        knob = results.get("http_no_sql")
        if knob and "facets" in knob:
            lines += render_http(
                knob,
                "gunicorn + wrk, bench knob: each worker answers the hot-path SQL statement "
                f"from memory ({wsgi.KNOB}=no_sql), same settings",
            )
    elif h:
        lines.append(f"gunicorn + wrk: skipped ({h.get('skipped')})")
        lines.append("")
    lines.append("Targets (issue 5), ratios of medians measured in this run")
    for what, bound, value, met in results["targets"]:
        verdict = "-" if met is None else ("met" if met else "NOT MET")
        lines.append(f"  {what:42}{bound:>8}{fmt_ratio(value):>10}  {verdict}")
    lines.append("")
    lines.append("Redis per org: fields, MEMORY USAGE bytes (SAMPLES 0), OBJECT ENCODING")
    for slug, m in results["redis_memory"].items():
        parts = []
        for name in ("cells", "totals"):
            e = m[name]
            parts.append(f"{name} {e.get('fields')} fields {e.get('bytes')} B {e.get('encoding')}")
        lines.append(f"  {slug:14} " + "; ".join(parts))
    config = next(iter(results["redis_memory"].values()), {}).get("config")
    if config:
        lines.append(f"  server: {config}")
    if results["problems"]:
        lines.append("")
        lines.append("PROBLEMS:")
        lines += [f"  {p}" for p in results["problems"]]
    return "\n".join(lines) + "\n"


def median_of(row: dict | None, name: str) -> float | None:
    return None if row is None else row["stats"][name]["median_us"]


def targets(results: dict) -> list[tuple[str, str, float | None, bool | None]]:
    """The issue's ratio targets: (what, target, measured, met); None where not measured."""
    rows = results["reads"]
    small = next((r for r in rows if r["slug"] == "small"), None)
    big = [r for r in rows if r["slug"] != "small"]
    lo, hi = (big[0], big[-1]) if big else (None, None)
    out = []

    def add(what: str, bound: float, value: float | None, at_most: bool = True) -> None:
        met = None if value is None else (value <= bound if at_most else value >= bound)
        out.append((what, f"{'<=' if at_most else '>='} {bound:g}", value, met))

    add(
        "small owner warm / floor",
        2.0,
        ratio(median_of(small, "owner_warm"), median_of(small, "floor")),
    )
    add("small 304 / floor", 1.5, ratio(median_of(small, "owner_304"), median_of(small, "floor")))
    add(
        "largest owner warm / raw",
        2.0,
        ratio(median_of(hi, "owner_warm"), median_of(hi, "raw_owner")),
    )
    add(
        "largest owner cold / warm",
        25,
        ratio(median_of(hi, "owner_cold"), median_of(hi, "owner_warm")),
        at_most=False,
    )
    add(
        "owner warm largest / smallest big org",
        1.2,
        ratio(median_of(hi, "owner_warm"), median_of(lo, "owner_warm")) if hi is not lo else None,
    )
    add(
        "largest member warm / small owner warm",
        1.3,
        ratio(median_of(hi, "member_warm"), median_of(hi, "small_warm")),
    )
    add(
        "largest first read after a write / unchanged",
        1.5,
        ratio(median_of(hi, "redis_after_write"), median_of(hi, "redis_unchanged")),
    )
    h = results.get("http") or {}
    add("gunicorn facets / floor req/s", 0.5, h.get("ratio"), at_most=False)
    w = results.get("writes")
    add(
        "PATCH with cache / without",
        1.3,
        ratio(w["stats"]["patch_with_hook"]["median_us"], w["stats"]["patch_no_hook"]["median_us"])
        if w
        else None,
    )
    return out


def scaling(rows: list[dict]) -> dict[str, float | None]:
    big = [r for r in rows if r["slug"] != "small"]
    if len(big) < 2:
        return {}
    lo, hi = big[0], big[-1]
    tag = f"({human(hi['sandboxes'])})/({human(lo['sandboxes'])})"
    out = {}
    for name in ("owner_warm", "owner_redis", "member_warm", "owner_cold", "owner_304"):
        out[f"{name} {tag}"] = ratio(hi["stats"][name]["median_us"], lo["stats"][name]["median_us"])
    return out


def flush_redis(url: str) -> None:
    if url.startswith("fakeredis://"):
        return
    client = redis_lib.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "meta": {
            "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "git": git_describe(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "database": "sqlite" if load.is_sqlite(args.database_url) else "postgresql",
            "redis": "fakeredis" if args.redis_url.startswith("fakeredis") else args.redis_url,
            "args": {k: v for k, v in vars(args).items() if k not in {"database_url"}},
            "bulk_load": load.BULK_LOAD_NOTE,
        },
        "problems": [],
    }
    flush_redis(args.redis_url)
    if load.is_sqlite(args.database_url):
        Path(args.database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    say(f"creating database {args.db_name} ...")
    db_url = load.create_database(args.database_url, args.db_name)
    config = app_config(db_url, args.redis_url)
    app = register_floor(create_app(config))
    memo_off = create_app({**config, "FACETS_BODY_MEMO_BYTES": 0})
    bare_app = create_app(config)
    with bare_app.app_context():
        state().hooks.hooks.clear()
    try:
        run_all(args, app, memo_off, bare_app, db_url, out_dir, results)
    finally:
        for a in (app, memo_off, bare_app):
            with a.app_context():
                state().db.dispose()
                state().redis.close()
        if not args.keep_db:
            load.drop_database(args.database_url, args.db_name)
        flush_redis(args.redis_url)
    results["meta"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["targets"] = targets(results)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = render(results)
    print(text, end="")
    if results.get("profile"):
        print(results["profile"])
    png = out_dir / "latency.png"
    if plot_latency(results, png):
        say(f"plot: {png}")
    say(f"results: {out_dir / 'latest.json'}")
    return results


def run_all(args, app, memo_off, bare_app, db_url: str, out_dir: Path, results: dict) -> None:
    say("loading orgs (services) and sandboxes (bulk, bypassing the unit of work) ...")
    small = load.create_org(app, "small", args.small_projects)
    load.load_sandboxes(app, small, args.small_sandboxes)
    orgs = []
    for size in args.sizes:
        org = load.create_org(app, f"org-{human(size).lower()}", args.projects)
        load.load_sandboxes(app, org, size)
        say(f"  {org.slug}: {size:,} sandboxes in {org.load_s:.1f}s")
        orgs.append(org)
    results["vacuum_s"] = load.vacuum_analyze(app)
    results["orgs"] = [
        {
            "slug": o.slug,
            "sandboxes": o.sandboxes,
            "projects": len(o.project_ids),
            "member_projects": len(o.member_projects),
            "load_s": round(o.load_s, 2),
        }
        for o in [small, *orgs]
    ]
    flush_redis(args.redis_url)  # drop what project creation sent: every org starts cold

    results["reads"] = []
    for org in [small, *orgs]:
        say(f"reads: {org.slug} ({args.requests} warm / {args.cold_requests} cold per scenario)")
        started = time.perf_counter()
        stats, problems = inprocess.measure_reads(
            app, memo_off, org, small, args.requests, args.cold_requests, args.block
        )
        results["problems"] += problems
        results["reads"].append(
            {
                "slug": org.slug,
                "sandboxes": org.sandboxes,
                "projects": len(org.project_ids),
                "seconds": round(time.perf_counter() - started, 1),
                "stats": {k: v.as_dict() for k, v in stats.items()},
            }
        )
    for row in results["reads"]:
        row["ratios"] = read_ratios(row)
    results["scaling"] = scaling(results["reads"])

    results["redis_memory"] = {}
    for org in [small, *orgs]:
        with inprocess.quiet_stderr():
            app.test_client().get(
                inprocess.facets_url(org), headers=inprocess.bearer(org.owner_key)
            ).get_data()
        results["redis_memory"][org.slug] = inprocess.redis_memory(app, org)

    say("round trips: SELECT 1 and PING on the app's drivers")
    results["round_trips"] = roundtrip.measure_round_trips(app, args.round_trips)

    target = orgs[0] if orgs else small
    say(f"writes: PATCH on {target.slug}, {args.write_requests} per variant")
    wstats, problems = inprocess.measure_writes(
        app, bare_app, target, args.write_requests, args.block
    )
    results["problems"] += problems
    results["writes"] = {"org": target.slug, "stats": {k: v.as_dict() for k, v in wstats.items()}}

    if not args.no_profile:
        biggest = orgs[-1] if orgs else small
        say(f"profile: {args.profile_requests} warm owner requests on {biggest.slug}")
        results["profile"] = inprocess.profile_warm(app, biggest, args.profile_requests, out_dir)

    if args.no_http:
        results["http"] = {"skipped": "--no-http"}
    elif http.wrk_path() is None:
        if not args.smoke:
            raise SystemExit("wrk is not installed (apt-get install wrk), or pass --no-http")
        results["http"] = {"skipped": "wrk not installed"}
    else:
        say("http: gunicorn + wrk, small org warm facets vs floor, as shipped and no-SQL knob ...")
        config = app_config(db_url, args.redis_url)
        env = {k: ("true" if v is True else str(v)) for k, v in config.items()}
        env["LOG_LEVEL"] = "INFO"  # gunicorn.conf.py lowercases it; the app wants upper case
        for name, extra in (("http", {}), ("http_no_sql", {wsgi.KNOB: "no_sql"})):
            results[name] = http.measure_http(
                {**env, **extra},
                inprocess.facets_url(small),
                small.owner_key,
                seconds=args.http_seconds,
                rounds=args.http_rounds,
                connections=args.http_connections,
                threads=2,
                warm=not args.smoke,
                log_path=out_dir / f"gunicorn_{name}.log",
            )
        if not args.smoke:  # a 1-second cold run is too short to judge by CPU shares
            results["problems"] += no_sql_knob_problems(results["http"], results["http_no_sql"])


if __name__ == "__main__":
    main()
