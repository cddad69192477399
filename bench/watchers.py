"""Waiting readers at scale: N watchers over M orgs against gunicorn (gunicorn.conf.py, gevent
workers) on a real PostgreSQL and Redis.

Each org has projects ``a`` and ``b`` and two members, one of each; half of the org's watchers
wait on the ``a`` member's view, half on the ``b`` member's (``?wait=`` with the tag of their
last answer, re-armed at once after each answer, as the page does). It prints:

- memory per 1,000 watchers (the workers' RSS with the watchers attached, minus before);
- the workers' CPU while nothing changes (percent of one core over ``--idle-s``);
- for ``--writes`` writes in project ``a`` of distinct orgs: the time from the write's response
  until every ``a`` watcher of that org has its ``200`` (p50 / p99 over writes), and the
  ``200``s that reached watchers whose view did not change (must be 0);
- the median latency of ordinary facets calls, and of sandbox writes to ``QUIET_ORGS`` orgs
  nobody watches, with no watcher, with all attached, and with none again once they left, and
  the ratios of "with" to the mean of both "without" (the issue's bound: 1.2); and, for
  scale, of writes that each change a watched view (their watchers' answers then share the
  cores with the next write);
- requests per tab-minute for an idle view: waiting (30 s and 60 s) vs polling every 5 s, from
  ``--tabs`` tabs of each kind over ``--minute-s`` seconds (60 by default).

``python -m bench.watchers --database-url postgresql://postgres@127.0.0.1:5432/facets_x
--redis-url redis://127.0.0.1:6379/N`` (the database's schema is recreated, the Redis db
flushed). The client is asyncio over raw sockets on this machine's cores too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import redis
from sqlalchemy import create_engine, text

from bench.http import free_port
from facets import create_app
from facets.config import normalize_database_url
from facets.extensions import state
from models import Access, Role, migrate
from models.services import accounts, projects, sandboxes

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "bench-watchers-jwt-secret-long-enough-for-hs256"
FACETS = "/api/v1/org/{slug}/sandboxes/facets"
QUIET_ORGS = 10  # the seeded orgs that get no watchers


@dataclass
class OrgViews:
    slug: str
    project_a: uuid.UUID
    tokens: dict[str, str]  # "a" / "b" member -> JWT
    owner: str


@dataclass(eq=False)  # identity: two watchers of one view are still two
class Watcher:
    org: OrgViews
    view: str  # "a" or "b"
    tag: str = ""
    answers: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status)
    errors: int = 0
    changes: list[tuple] = field(default_factory=list)  # (tag sent, tag received, version)


def seed(database_url: str, redis_url: str, n_orgs: int) -> list[OrgViews]:
    """Recreate the schema and load the orgs through the service layer."""
    engine = create_engine(normalize_database_url(database_url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    migrate.upgrade(normalize_database_url(database_url))
    redis.Redis.from_url(redis_url).flushdb()
    app = create_app(
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "JWT_SECRET": JWT_SECRET}
    )
    orgs = []
    with app.app_context():
        for i in range(n_orgs):
            slug = f"w{i:04d}"
            with state().unit_of_work() as uow:
                org = accounts.create_org(uow, slug=slug)
                users = {}
                for who, role in (("owner", Role.OWNER), ("a", Role.MEMBER), ("b", Role.MEMBER)):
                    email = f"{who}@{slug}.example.com"
                    users[who] = accounts.create_user(uow, email=email)
                    accounts.add_member(uow, org_slug=slug, email=email, role=role)
            with state().unit_of_work() as uow:
                version = uow.lock_org(org.id)
                access = Access(org.id, slug, users["owner"].id, Role.OWNER, version, None)
                ids = {}
                for key in ("a", "b"):
                    ids[key] = projects.create_project(uow, access=access, key=key, name=key).id
                    projects.add_project_member(
                        uow, access=access, project_id=ids[key], email=f"{key}@{slug}.example.com"
                    )
                    for _ in range(3):
                        sandboxes.create_sandbox(uow, access=access, project_id=ids[key])
            orgs.append(
                OrgViews(
                    slug,
                    ids["a"],
                    {"a": token(users["a"].id), "b": token(users["b"].id)},
                    token(users["owner"].id),
                )
            )
        state().db.dispose()
    return orgs


def load_seeded(database_url: str, n_orgs: int) -> list[OrgViews]:
    """The orgs an earlier ``seed`` loaded (``--reuse``): no reload of the database."""
    engine = create_engine(normalize_database_url(database_url))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT o.slug, p.id, u.email, u.id FROM orgs o JOIN projects p ON p.org_id = o.id"
                " AND p.key = 'a' JOIN users u ON u.email LIKE '%@' || o.slug || '.example.com'"
                " ORDER BY o.slug LIMIT :n"
            ),
            {"n": n_orgs * 3},
        ).all()
    engine.dispose()
    by_slug: dict[str, dict] = {}
    for slug, project_a, email, user_id in rows:
        by_slug.setdefault(slug, {"project": project_a})[email.split("@")[0]] = token(user_id)
    return [
        OrgViews(slug, v["project"], {"a": v["a"], "b": v["b"]}, v["owner"])
        for slug, v in sorted(by_slug.items())
    ][:n_orgs]


async def http(port: int, method: str, path: str, headers: dict, body: bytes = b""):
    """One request on its own connection: (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = {"Host": "bench", "Connection": "close", "Content-Length": str(len(body)), **headers}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    writer.write(f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head_raw, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_raw.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), fields, payload


def token(user_id) -> str:
    """A JWT for the user, valid for the bench's two hours (``iat`` and ``exp``, as required)."""
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(hours=2)}
    return jwt.encode(claims, JWT_SECRET, "HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def watch_forever(port: int, w: Watcher, wait_s: int, stop: asyncio.Event) -> None:
    """Wait on the view, re-arming after every answer, until ``stop``; an error (a refused
    database connection on this shared machine) is counted and retried a second later."""
    url = FACETS.format(slug=w.org.slug)
    while not stop.is_set():
        headers = bearer(w.org.tokens[w.view])
        if w.tag:
            headers["If-None-Match"] = w.tag
        query = f"?wait={wait_s}" if w.tag else ""
        try:
            status, fields, _ = await http(port, "GET", url + query, headers)
        except OSError:
            status, fields = 0, {}
        if status not in (200, 304):
            w.errors += 1
            await asyncio.sleep(1)
            continue
        if w.tag:
            w.answers.append((time.monotonic(), status))
            if status == 200:
                w.changes.append((w.tag, fields.get("etag"), fields.get("x-facets-version")))
        w.tag = fields.get("etag", w.tag)


async def poll_forever(port: int, w: Watcher, every_s: float, stop: asyncio.Event) -> None:
    url = FACETS.format(slug=w.org.slug)
    while not stop.is_set():
        headers = bearer(w.org.tokens[w.view])
        if w.tag:
            headers["If-None-Match"] = w.tag
        status, fields, _ = await http(port, "GET", url, headers)
        w.answers.append((time.monotonic(), status))
        w.tag = fields.get("etag", w.tag)
        await asyncio.sleep(every_s)


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def cpu_s(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def metric(port: int, token: str, name: str) -> float:
    _, _, body = await http(port, "GET", "/metrics", bearer(token))
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def ordinary_median_ms(port: int, orgs: list[OrgViews], n: int) -> float:
    """The median of ``n`` owner facets calls, one at a time, after one unmeasured pass (so
    that both measurements are of warm orgs)."""
    for org in orgs[:n]:
        await http(port, "GET", FACETS.format(slug=org.slug), bearer(org.owner))
    times = []
    for i in range(n):
        org = orgs[i % len(orgs)]
        start = time.perf_counter()
        status, _, _ = await http(port, "GET", FACETS.format(slug=org.slug), bearer(org.owner))
        assert status == 200, status
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def ordinary_write_median_ms(port: int, orgs: list[OrgViews], n: int) -> float:
    """The median of ``n`` sandbox creations (owner, project ``a``), one at a time, one org
    after another."""
    times = []
    for i in range(n):
        org = orgs[i % len(orgs)]
        body = json.dumps({"project_id": str(org.project_a), "state": "running"}).encode()
        headers = {**bearer(org.owner), "Content-Type": "application/json"}
        start = time.perf_counter()
        status, _, reply = await http(
            port, "POST", f"/api/v1/org/{org.slug}/sandboxes", headers, body
        )
        assert status == 201, reply
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def scenario(port: int, master: int, orgs: list[OrgViews], args) -> dict:
    report: dict = {}
    pids = worker_pids(master)
    metrics_token = args.metrics_token
    # A few orgs nobody watches take the ordinary writes: whether watchers elsewhere slow them.
    quiet, watched = orgs[-QUIET_ORGS:], orgs[:-QUIET_ORGS]
    report["ordinary_ms_without_watchers"] = await ordinary_median_ms(port, orgs, 200)
    report["write_ms_without_watchers"] = await ordinary_write_median_ms(port, quiet, 100)
    rss_before = rss_kib(pids)

    per_org = max(2, args.watchers // len(watched))
    watchers = [Watcher(org, "a" if j % 2 == 0 else "b") for org in watched for j in range(per_org)]
    stop = asyncio.Event()
    tasks = []
    for i in range(0, len(watchers), 100):  # attach in batches: the database has few slots
        batch = watchers[i : i + 100]
        tasks += [asyncio.create_task(watch_forever(port, w, args.wait, stop)) for w in batch]
        await asyncio.sleep(0.2)
    for _ in range(60):  # until 98% wait (some are always between two waits), at most ~1 min
        if await metric(port, metrics_token, "facets_waiting_reads") >= 0.98 * len(watchers):
            break
        await asyncio.sleep(0.5)
    attached = await metric(port, metrics_token, "facets_waiting_reads")
    report["watchers"] = len(watchers)
    report["attached"] = int(attached)
    report["orgs"] = len(watched)
    report["rss_mib_per_1000"] = (rss_kib(pids) - rss_before) / 1024 / len(watchers) * 1000

    if args.idle_s >= args.wait:
        print("--idle-s >= --wait: the idle window includes every wait's expiry", file=sys.stderr)
    cpu_before, t0 = cpu_s(pids), time.monotonic()
    await asyncio.sleep(args.idle_s)
    report["idle_cpu_pct"] = (cpu_s(pids) - cpu_before) / (time.monotonic() - t0) * 100
    report["ordinary_ms_with_watchers"] = await ordinary_median_ms(port, orgs, 200)

    # writes in project a of distinct orgs, one at a time
    by_org: dict[str, list[Watcher]] = {}
    for w in watchers:
        by_org.setdefault(w.org.slug, []).append(w)
    spread, wrong, late = [], 0, 0
    targets = watched[: args.writes]
    for org in targets:
        marks = {id(w): len(w.answers) for w in watchers}
        body = json.dumps({"project_id": str(org.project_a), "state": "running"}).encode()
        status, _, reply = await http(
            port,
            "POST",
            f"/api/v1/org/{org.slug}/sandboxes",
            {**bearer(org.owner), "Content-Type": "application/json"},
            body,
        )
        assert status == 201, reply
        written = time.monotonic()
        changed = [w for w in by_org[org.slug] if w.view == "a"]
        for _ in range(500):
            if all(len(w.answers) > marks[id(w)] for w in changed):
                break
            await asyncio.sleep(0.01)
        arrived = [w.answers[marks[id(w)]][0] for w in changed if len(w.answers) > marks[id(w)]]
        late += len(changed) - len(arrived)
        if arrived:
            spread.append((max(arrived) - written) * 1000)
        await asyncio.sleep(0.2)  # let any wrongly woken watcher answer before counting
        for w in watchers:
            if w in changed:
                continue
            woken = [a for a in w.answers[marks[id(w)] :] if a[1] == 200]
            if woken:
                wrong += len(woken)
                print(
                    f"woken for nothing: {w.org.slug} {w.view} {w.changes[-len(woken) :]}",
                    file=sys.stderr,
                )
    report["write_ms_with_watchers"] = await ordinary_write_median_ms(port, quiet, 100)
    # and writes that each change a watched view: their watchers' answers share the cores
    report["write_ms_changing_watched_views"] = await ordinary_write_median_ms(port, watched, 100)
    report["writes"] = len(targets)
    report["wake_p50_ms"] = pct(spread, 0.5)
    report["wake_p99_ms"] = pct(spread, 0.99)
    report["woken_unchanged"] = wrong
    report["changed_not_answered_in_5s"] = late
    report["watcher_errors_retried"] = sum(w.errors for w in watchers)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    # the same without watchers again: the ratios are to both measurements without (drift)
    for _ in range(60):
        if await metric(port, metrics_token, "facets_waiting_reads") == 0:
            break
        await asyncio.sleep(0.5)
    report["ordinary_ms_without_watchers_after"] = await ordinary_median_ms(port, orgs, 200)
    report["write_ms_without_watchers_after"] = await ordinary_write_median_ms(port, quiet, 100)
    for kind in ("ordinary", "write"):
        without = (
            report[f"{kind}_ms_without_watchers"] + report[f"{kind}_ms_without_watchers_after"]
        ) / 2
        report[f"{kind}_with_over_without"] = report[f"{kind}_ms_with_watchers"] / without

    # requests per tab-minute, idle views: waiting (wait=30 and 60) vs polling every 5 s
    stop = asyncio.Event()
    tabs_org = quiet[0]
    kinds = {f"waiting_{s}s": [Watcher(tabs_org, "b") for _ in range(args.tabs)] for s in (30, 60)}
    kinds["polling_5s"] = [Watcher(tabs_org, "b") for _ in range(args.tabs)]
    tab_tasks = [
        asyncio.create_task(watch_forever(port, w, int(kind.split("_")[1][:-1]), stop))
        for kind, tabs in kinds.items()
        if kind.startswith("waiting")
        for w in tabs
    ]
    tab_tasks += [
        asyncio.create_task(poll_forever(port, w, 5.0, stop)) for w in kinds["polling_5s"]
    ]
    await asyncio.sleep(args.minute_s)
    stop.set()
    for task in tab_tasks:
        task.cancel()
    await asyncio.gather(*tab_tasks, return_exceptions=True)
    minutes = args.minute_s / 60
    # steady state: a waiting tab's first plain read (for its tag) is once per page load
    for kind, tabs in kinds.items():
        report[f"req_per_tab_min_{kind}"] = sum(len(w.answers) for w in tabs) / len(tabs) / minutes
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--watchers", type=int, default=5000)
    parser.add_argument("--orgs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wait", type=int, default=30)
    parser.add_argument("--writes", type=int, default=40)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--tabs", type=int, default=50)
    parser.add_argument("--minute-s", type=float, default=60.0)
    parser.add_argument("--metrics-token", default="bench-watchers-metrics")
    parser.add_argument("--reuse", action="store_true", help="the orgs of an earlier run's seed")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that gunicorn is stopped too

    if args.reuse:
        orgs = load_seeded(args.database_url, args.orgs + QUIET_ORGS)
        redis.Redis.from_url(args.redis_url).flushdb()
    else:
        print(f"seeding {args.orgs} + {QUIET_ORGS} orgs ...", file=sys.stderr)
        orgs = seed(args.database_url, args.redis_url, args.orgs + QUIET_ORGS)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "JWT_SECRET": JWT_SECRET,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(args.workers),
        "GUNICORN_WORKER_CONNECTIONS": str(args.watchers + 500),
        "RATE_LIMITS_ENABLED": "false",
        "METRICS_TOKEN": args.metrics_token,
        "LOG_LEVEL": "warning",
    }
    log = tempfile.NamedTemporaryFile(prefix="bench-watchers-", suffix=".log", delete=False)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for _ in range(200):
            try:
                asyncio.run(http(port, "GET", "/healthz", {}))
                break
            except OSError:
                time.sleep(0.1)
        report = asyncio.run(scenario(port, server.pid, orgs, args))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in report.items()}))
    print(f"(gunicorn log: {log.name})", file=sys.stderr)


if __name__ == "__main__":
    main()
