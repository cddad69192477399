"""Traffic through gunicorn as shipped: many orgs, polling dashboards, writes, one hot org.

``python -m bench.traffic`` (``--help`` for the sizes). On real PostgreSQL and Redis it creates
(and drops) its own database, seeds ``--orgs`` orgs with Zipf-distributed sizes (rank r has
``max/r`` projects and sandboxes) plus a ``hot`` org, starts gunicorn from
``gunicorn.conf.py`` with its defaults (rate limits off: a few client threads stand for many
callers), and runs, each for ``--seconds``:

- the floor endpoint (``bench.floor``) polled by as many clients as there are dashboards: the
  framework's own cost, beside which the other phases are read;
- dashboards polling one owner's view of a Zipf-chosen org with ``If-None-Match``, with
  sandbox writes (a create, then toggling it running/paused) at 0%, 2% and 10% of requests;
- the same dashboards (0% writes, the hot org excluded) while ``--hot-writers`` (16) toggle
  sandboxes of the hot org (a 429 from the per-org bound is retried after
  ``traffic_clients.HOT_RETRY_S``), then those writers alone;
- a bare one-row lock transaction loop on the same database, as many connections (``BEGIN;
  SELECT ... FOR UPDATE; UPDATE; COMMIT``): the PostgreSQL ceiling for one hot row.

With ``--rounds N`` the whole sequence (and the bare loop) runs N times on the same server:
each phase's figures are the medians of its rounds (answers and statuses are summed), and each
ratio target is the median of the per-round ratios, so a slow spell of the shared machine moves
one round, not the verdict.

Reported: served req/s, reads' and writes' p50/p99, the hot org's writes/s next to the bare
loop's, the memo hit rate (``facets_served_total`` by path, from ``/metrics``), CPU per request
(the gunicorn workers' and the whole machine's, ``bench.cpu``), every dashboard answer judged
against SQL at its ``X-Facets-Version`` after its phase (``bench.traffic_check``), the issue's
ratio targets, and a plot of read p99 against write share (with matplotlib). The load
generator shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import load
from bench.cpu import CpuMeter
from bench.http import ROOT, free_port, start_gunicorn, stop_gunicorn, wait_ready
from bench.run import JWT_SECRET, flush_redis
from bench.traffic_check import Answer, judge
from bench.traffic_clients import Org, Tally, dashboard, floor_reader, hot_writer
from bench.traffic_plot import plot_read_p99
from facets import create_app
from facets.extensions import state

HOT = "hot"
HOT_WRITERS = 16
HOT_PHASE = "hot org busy"
HOT_ALONE = "hot org alone"
FLOOR_PHASE = "floor endpoint"
TALLIES = ("reads", "writes", "hot_writes")  # a phase's Tally summaries
WRITE_SHARES = (0.0, 0.02, 0.10)


def run_for(seconds: float, threads: list[threading.Thread], stop: threading.Event) -> None:
    """Start ``threads``, let them run ``seconds``, then stop them and wait."""
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()


def bare_lock_loop(db_url: str, seconds: float, connections: int) -> float:
    """Transactions per second of ``connections`` clients locking and updating one row."""
    libpq = load._libpq(db_url)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_lock (id int PRIMARY KEY, n bigint)")
        conn.execute("INSERT INTO bench_lock VALUES (1, 0) ON CONFLICT DO NOTHING")
    done = [0] * connections
    stop = threading.Event()

    def loop(i: int) -> None:
        with psycopg.connect(libpq) as conn:
            while not stop.is_set():
                conn.execute("SELECT n FROM bench_lock WHERE id = 1 FOR UPDATE")
                conn.execute("UPDATE bench_lock SET n = n + 1 WHERE id = 1")
                conn.commit()
                done[i] += 1

    run_for(seconds, [threading.Thread(target=loop, args=(i,)) for i in range(connections)], stop)
    return sum(done) / seconds


SERVED = re.compile(r'^facets_served_total\{path="(\w+)"\} ([0-9.e+]+)$', re.M)


def served(port: int) -> dict[str, float]:
    """``facets_served_total`` by path, summed over the workers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    totals: dict[str, float] = {}
    for path, value in SERVED.findall(text):
        totals[path] = totals.get(path, 0) + float(value)
    return totals


@dataclass(frozen=True)
class Server:
    """The gunicorn under test: its port, its CPU meter, the database it serves."""

    port: int
    cpu: CpuMeter
    db_url: str


def phase(
    server: Server,
    hot_writers: int,
    seconds: float,
    dashboards: list[Org],
    share: float,
    readers: int,
    hot: Org | None = None,
    floor: bool = False,
) -> dict:
    """One phase: ``readers`` dashboards (or, with ``floor``, pollers of the floor endpoint)
    and, with ``hot``, its writers."""
    stop = threading.Event()
    reads, writes, hot_writes = Tally(), Tally(), Tally()
    answers: list[Answer] = []
    port = server.port
    before, cpu_before = served(port), server.cpu.snapshot()
    threads = [
        threading.Thread(target=floor_reader, args=(port, stop, reads))
        if floor
        else threading.Thread(
            target=dashboard, args=(port, dashboards, share, i, stop, reads, writes, answers)
        )
        for i in range(readers)
    ]
    if hot is not None:
        threads += [
            threading.Thread(target=hot_writer, args=(port, hot, stop, hot_writes))
            for _ in range(hot_writers)
        ]
    run_for(seconds, threads, stop)
    after, cpu_after = served(port), server.cpu.snapshot()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    bodies = sum(v for k, v in delta.items() if k != "not_modified") or 1
    requests = len(reads.ms) + len(writes.ms) + len(hot_writes.ms)
    out = {
        "share": share,
        "served_per_s": round(requests / seconds, 1),
        "cpu_us_per_request": CpuMeter.per_request(cpu_before, cpu_after, requests),
        "answers": judge(server.db_url, answers),
        "reads": reads.summary(seconds),
        "writes": writes.summary(seconds),
        "served_by_path": delta,
        "memo_hit_rate": round(delta.get("memo", 0) / bodies, 3),  # of the 200s
        "not_modified_share": round(delta.get("not_modified", 0) / (sum(delta.values()) or 1), 3),
    }
    if hot is not None:
        out["hot_writes"] = hot_writes.summary(seconds)
        out["hot_writes_ok_per_s"] = round(
            (hot_writes.statuses.get(200, 0) + hot_writes.statuses.get(201, 0)) / seconds, 1
        )
    return out


def combine_rounds(rounds: list[dict]) -> dict:
    """One phase's figures over its rounds: medians, but answers, counts and statuses summed."""
    first = rounds[0]
    out: dict = {}
    for key, value in first.items():
        values = [r[key] for r in rounds if key in r]
        if key == "answers":
            out[key] = {k: sum(v[k] for v in values) for k in ("checked", "overtaken", "wrong")} | {
                "examples": [e for v in values for e in v.get("examples", [])][:5]
            }
        elif key == "served_by_path":
            out[key] = _summed(values)
        elif key in TALLIES:
            out[key] = _tally(values)
        elif isinstance(value, dict):
            out[key] = {k: median([v.get(k) for v in values]) for k in value}
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = median(values)
        else:
            out[key] = value
    return out


def _tally(summaries: list[dict]) -> dict:
    summaries = [s for s in summaries if s.get("n")]
    if not summaries:
        return {"n": 0}
    return {
        "n": sum(s["n"] for s in summaries),
        **{k: median([s[k] for s in summaries]) for k in ("per_s", "p50_ms", "p99_ms")},
        "statuses": _summed([s["statuses"] for s in summaries]),
    }


def _summed(dicts: list[dict]) -> dict:
    total: dict = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return dict(sorted(total.items()))


def median(values: list, digits: int = 3):
    """The median of the values present (None: none is), rounded."""
    present = [v for v in values if v is not None]
    return round(statistics.median(present), digits) if present else None


def seed(app, n_orgs: int, max_projects: int, max_sandboxes: int) -> tuple[list[Org], Org]:
    orgs = []
    for rank in range(1, n_orgs + 1):
        data = load.create_org(app, f"t{rank:04d}", max(1, max_projects // rank))
        load.load_sandboxes(app, data, max(10, max_sandboxes // rank))
        orgs.append(Org(data.slug, data.owner_key, 1 / rank))
    return orgs, seed_hot(app)


def seed_hot(app) -> Org:
    """The hot org: 10 projects, 1,000 sandboxes; its writers toggle sandboxes of their own."""
    hot = load.create_org(app, HOT, 10)
    load.load_sandboxes(app, hot, 1000)
    return Org(HOT, hot.owner_key, 1.0)


def start_server(
    config: dict[str, str], log_path: Path, root: Path = ROOT
) -> tuple[subprocess.Popen, Server]:
    """gunicorn as shipped on ``config``'s database and Redis (serving the checkout ``root``),
    rate limits off and ``/metrics`` readable, once it answers; stop it with ``stop_gunicorn``."""
    env = {**config, "RATE_LIMITS_ENABLED": "false", "METRICS_PUBLIC": "true"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_gunicorn({"LOG_LEVEL": "WARNING", **env}, log_path, port, root=root)
    try:
        wait_ready(port, proc)
    except BaseException:
        stop_gunicorn(proc)
        raise
    return proc, Server(port, CpuMeter(proc.pid), config["DATABASE_URL"])


def ratio(a, b):
    return None if not a or not b else round(a / b, 2)


def render(r: dict) -> str:
    lines = [f"== traffic benchmark == {r['meta']}"]
    lines.append(
        f"{'phase':24}{'req/s':>8}{'read p50':>10}{'read p99':>10}"
        f"{'write p50':>10}{'write p99':>10}{'memo hit':>10}{'304s':>8}"
        f"{'app us/req':>12}{'machine us/req':>16}{'checked':>9}{'overtaken':>11}{'wrong':>7}"
    )
    for name, p in r["phases"].items():
        w = p["writes"] if p["writes"].get("n") else p.get("hot_writes", {})
        cpu, judged = p["cpu_us_per_request"], p["answers"]
        lines.append(
            f"{name:24}{p['served_per_s']:>8}{p['reads'].get('p50_ms', '-'):>10}"
            f"{p['reads'].get('p99_ms', '-'):>10}{w.get('p50_ms', '-'):>10}"
            f"{w.get('p99_ms', '-'):>10}{p['memo_hit_rate']:>10}{p['not_modified_share']:>8}"
            f"{cpu['app']!s:>12}{cpu['machine']!s:>16}{judged['checked']:>9}"
            f"{judged['overtaken']:>11}{judged['wrong']:>7}"
        )
    for name in (HOT_PHASE, HOT_ALONE):
        hot = r["phases"][name]
        lines.append(
            f"{name}: {hot['hot_writes_ok_per_s']} writes/s committed "
            f"(statuses {hot['hot_writes'].get('statuses')})"
        )
    lines.append(f"bare one-row lock loop: {r['bare_lock_tx_per_s']:.0f} tx/s")
    floor, quiet = r["phases"][FLOOR_PHASE], r["phases"]["0% writes"]
    cpu = ratio(quiet["cpu_us_per_request"]["machine"], floor["cpu_us_per_request"]["machine"])
    lines.append(
        f"dashboards at 0% writes beside the floor: req/s "
        f"{ratio(quiet['served_per_s'], floor['served_per_s'])}, read p50 "
        f"{ratio(quiet['reads'].get('p50_ms'), floor['reads'].get('p50_ms'))}x, machine CPU "
        f"per request {cpu}x"
    )
    several = len(r["rounds"]) > 1
    lines.append(
        f"targets (ratios of this run{', medians of the per-round ratios' if several else ''}):"
    )
    for what, bound, at_most, value, per_round in r["targets"]:
        met = value is not None and (value <= bound if at_most else value >= bound)
        verdict = "-" if value is None else ("met" if met else "NOT MET")
        sign = "<=" if at_most else ">="
        rounds = f"  (rounds: {', '.join(map(str, per_round))})" if several and per_round else ""
        lines.append(f"  {what:48}{sign:>4}{bound:>5}{value!s:>8}  {verdict}{rounds}")
    return "\n".join(lines) + "\n"


def one_round(server: Server, args, orgs: list[Org], hot: Org) -> dict:
    """Every phase once, then the bare lock loop (gunicorn idle meanwhile)."""
    phases = {
        FLOOR_PHASE: phase(
            server, args.hot_writers, args.seconds, orgs, 0.0, args.readers, floor=True
        )
    }
    for share in WRITE_SHARES:
        print(f"phase: {share:.0%} writes", flush=True)
        phases[f"{share:.0%} writes"] = phase(
            server, args.hot_writers, args.seconds, orgs, share, args.readers
        )
    phases[HOT_PHASE] = phase(
        server, args.hot_writers, args.seconds, orgs, 0.0, args.readers, hot=hot
    )
    phases[HOT_ALONE] = phase(server, args.hot_writers, args.seconds, orgs, 0.0, 0, hot=hot)
    bare = bare_lock_loop(server.db_url, args.seconds, args.hot_writers)
    return {"phases": phases, "bare_lock_tx_per_s": bare}


def _ratio_targets(rounds: list[dict]) -> list[tuple]:
    """The issue's ratio targets, each with its value in every round."""

    def per_round(figure) -> list:
        return [figure(r["phases"], r["bare_lock_tx_per_s"]) for r in rounds]

    def p99(ph: dict, name: str):
        return ph[name]["reads"].get("p99_ms")

    return [
        (
            "hot-org writes/s / bare row-lock loop",
            0.5,
            False,
            per_round(lambda ph, bare: ratio(ph[HOT_PHASE]["hot_writes_ok_per_s"], bare)),
        ),
        (
            "the same, no dashboards polling",
            0.5,
            False,
            per_round(lambda ph, bare: ratio(ph[HOT_ALONE]["hot_writes_ok_per_s"], bare)),
        ),
        (
            "other orgs' read p99, hot org busy / quiet",
            2,
            True,
            per_round(lambda ph, _: ratio(p99(ph, HOT_PHASE), p99(ph, "0% writes"))),
        ),
        (
            "read p99, 10% writes / 0% writes",
            3,
            True,
            per_round(lambda ph, _: ratio(p99(ph, "10% writes"), p99(ph, "0% writes"))),
        ),
    ]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.traffic", description=__doc__.split("\n")[0])
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db-name", default="facets_traffic")
    p.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/9", help="a Redis db the bench may FLUSH"
    )
    p.add_argument("--orgs", type=int, default=60)
    p.add_argument("--max-projects", type=int, default=1000)
    p.add_argument("--max-sandboxes", type=int, default=100_000)
    p.add_argument("--readers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--hot-writers", type=int, default=HOT_WRITERS)
    p.add_argument("--rounds", type=int, default=1, help="run every phase this many times")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    flush_redis(args.redis_url)
    db_url = load.create_database(args.database_url, args.db_name)
    config = {"DATABASE_URL": db_url, "REDIS_URL": args.redis_url, "JWT_SECRET": JWT_SECRET}
    app = create_app({**config, "LOG_LEVEL": "WARNING"})
    results: dict = {
        "meta": f"{args.orgs} orgs + hot, readers {args.readers}, hot writers "
        f"{args.hot_writers}, {args.seconds:g}s per phase, {args.rounds} round(s)",
        "phases": {},
        "rounds": [],
    }
    try:
        print(f"seeding {args.orgs} orgs and the hot one ...", flush=True)
        orgs, hot = seed(app, args.orgs, args.max_projects, args.max_sandboxes)
        load.vacuum_analyze(app)
        with app.app_context():
            state().db.dispose()
        proc, server = start_server(config, Path(args.out) / "traffic_gunicorn.log")
        try:
            for n in range(1, args.rounds + 1):
                print(f"round {n} of {args.rounds}", flush=True)
                results["rounds"].append(one_round(server, args, orgs, hot))
        finally:
            stop_gunicorn(proc)
    finally:
        load.drop_database(args.database_url, args.db_name)
        flush_redis(args.redis_url)
    rounds = results["rounds"]
    results["phases"] = {
        name: combine_rounds([r["phases"][name] for r in rounds]) for name in rounds[0]["phases"]
    }
    results["bare_lock_tx_per_s"] = median([r["bare_lock_tx_per_s"] for r in rounds])
    results["targets"] = [
        (what, bound, at_most, median(per_round), per_round)
        for what, bound, at_most, per_round in _ratio_targets(rounds)
    ]
    wrong = sum(p["answers"]["wrong"] for p in results["phases"].values())
    results["targets"].append(("answers that differ from SQL at their version", 0, True, wrong, []))
    out = Path(args.out) / "traffic.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results), end="")
    plotted = plot_read_p99(results, Path(args.out) / "traffic_read_p99.png")
    print(
        f"plot: {plotted}"
        if plotted
        else "plot: matplotlib not installed (pip install -e '.[bench]')"
    )
    return results


if __name__ == "__main__":
    main()
