"""The scale-out soak: ``python -m soak.scale [--duration S] [--database-url URL]``.

Two gunicorn instances (separate masters on separate ports, as two machines would be) share a
scratch PostgreSQL database and a private 3-master, 3-replica Redis Cluster
(``soak.cluster``), with the proxy (``deploy/nginx.conf``, ``soak.nginx``) in front of both.
Readers go through the proxy, which sends their requests round-robin to the instances (each
must have answered some: the proxy's log names the upstream of every request), and judge
every answer against SQL at its ``X-Facets-Version``; each writer writes through one instance
and, right after each acknowledged write, reads the facets from the *other* one directly:
that answer must be of the write's version or later (read-your-writes across instances) and
equal SQL at its version. Meanwhile the cluster has slots migrated
(``redis-cli --cluster reshard``), a master killed and its replica promoted, and is
restarted empty. Afterwards ``flask facets verify`` must be clean. It fails on what the
single-Redis soak fails on (``soak.report``), plus any stale cross-instance read.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from models import migrate
from soak.cluster import LocalCluster
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
from soak.nginx import Nginx
from soak.oracle import Oracle
from soak.report import Report
from soak.servers import Gunicorn, ScratchDatabase
from soak.traffic import FACETS_PATH, VERSION_HEADER, Reader, Writer, call

SHORT_S = 30
INSTANCES = 2
READERS = 2
WORKERS = 2
RESHARD_SLOTS = 1000
MAX_CONTENT_LENGTH = 64 * 1024  # the app's and the proxy's body limit
# (fraction of the run, fault): a reshard needs every node up, so it comes first.
FAULTS = ((0.2, "reshard"), (0.45, "failover"), (0.7, "restart"))


class CrossWriter(Writer):
    """A writer through one instance that reads its facets through another after each
    acknowledged write."""

    role = "cross-writer"

    def __init__(self, *, read_url: str, oracle: Oracle, **kwargs) -> None:
        super().__init__(**kwargs)
        self.read_url, self.oracle = read_url, oracle
        self.cross_reads = 0

    def mutate(self, op, method, sandbox_id, body) -> None:
        acknowledged = len(self.result.acknowledged)
        super().mutate(op, method, sandbox_id, body)
        if len(self.result.acknowledged) == acknowledged:
            return
        floor = self.oracle.version()  # includes the write just acknowledged
        path = FACETS_PATH.format(org=self.org)
        record, response = call(self.read_url, "GET", path, headers=self.caller.headers)
        self.result.calls.append(record)  # a 5xx or no answer is judged with the others
        if response is None or response.status_code != 200:
            return
        version = int(response.headers[VERSION_HEADER])
        self.cross_reads += 1
        if version < floor:
            self.result.problems.append(
                f"read-your-writes: {self.read_url} answered version {version} after a write "
                f"through {self.base_url} was acknowledged at version {floor} or before"
            )
            return
        sql_version, expected = self.oracle.facets(self.caller, (), None)
        if sql_version == version and response.json() != expected:
            self.result.problems.append(
                f"cross-instance read at version {version} differs from SQL: "
                f"{response.json()} != {expected}"
            )


def inject(cluster: LocalCluster, what: str) -> str:
    if what == "reshard":
        cluster.reshard(RESHARD_SLOTS)
        return f"{RESHARD_SLOTS} slots migrated"
    if what == "failover":
        master, replica = cluster.kill_master_and_promote()
        return f"master :{master} killed, replica :{replica} promoted"
    cluster.restart_empty()
    return "cluster restarted empty"


def proxied_by_upstream(log_path: Path) -> dict[str, int]:
    """How many requests the proxy's access log (JSON lines) says each upstream answered."""
    counts: dict[str, int] = {}
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # nginx's own error lines
        for upstream in str(record.get("upstream", "")).split(","):  # "a, b": a failed over
            upstream = upstream.strip()
            if upstream and upstream != "-":
                counts[upstream] = counts.get(upstream, 0) + 1
    return counts


def run_scale_soak(
    server_url: str,
    duration_s: float,
    work_dir: Path,
    seed: int = 0,
    log=print,
    rate_limits: bool = True,
) -> tuple[Report, int]:
    """Run it all and tear it down; returns the report and how many cross-instance reads
    were judged. Rate limits are on, with budgets no client reaches, as in ``soak.run``."""
    report = Report(duration_s)
    database = ScratchDatabase(server_url, prefix="facets_scale")
    cluster = LocalCluster(work_dir / "cluster")
    instances: list[Gunicorn] = []
    oracle = proxy = None
    database.create()
    try:
        migrate.upgrade(database.url)
        cluster.start()
        envs = [
            {
                **server_env(
                    database.url,
                    cluster.url,
                    work_dir / f"prometheus-{i}",
                    MAX_CONTENT_LENGTH=str(MAX_CONTENT_LENGTH),
                ),
                "GUNICORN_WORKERS": str(WORKERS),
                "RATE_LIMITS_ENABLED": "true" if rate_limits else "false",
            }
            for i in range(INSTANCES)
        ]
        org_id, owner, member = seed_accounts(app_config(envs[0]))
        instances = [
            Gunicorn(env, work_dir / f"gunicorn-{i}.log", workers=WORKERS)
            for i, env in enumerate(envs)
        ]
        for instance in instances:
            instance.start()
        urls = [instance.base_url for instance in instances]
        proxy = Nginx(
            [f"127.0.0.1:{instance.port}" for instance in instances],
            work_dir / "nginx.log",
            MAX_CONTENT_LENGTH,
        )
        proxy.start()
        log(f"scale soak: proxy {proxy.base_url} to {urls}, cluster {cluster.url}")
        projects = seed_projects(urls[0], owner, member)
        oracle = Oracle(database.url, org_id)

        stop, allowed = threading.Event(), threading.Event()
        max_requests = int(duration_s * REQUESTS_PER_SECOND_CAP) + 1
        common = {"org": ORG, "stop": stop, "max_requests": max_requests}
        readers = [
            Reader(
                base_url=proxy.base_url,
                callers=[owner, member],
                projects=projects,
                oracle=oracle,
                seed=seed * 100 + i,
                **common,
            )
            for i in range(READERS)
        ]
        writers = [
            CrossWriter(
                base_url=urls[i % INSTANCES],
                read_url=urls[(i + 1) % INSTANCES],
                oracle=oracle,
                caller=caller,
                projects=caller_projects,
                allowed=allowed,
                seed=seed * 100 + 50 + i,
                **common,
            )
            for i, (caller, caller_projects) in enumerate(
                [(owner, [*projects, None]), (member, [projects[0], None])]
            )
        ]
        traffic = Traffic.start(readers=readers, writers=writers, stop=stop, allowed=allowed)
        try:
            for fraction, what in FAULTS:
                traffic.sleep_until(fraction * duration_s)
                started = time.monotonic()
                done = inject(cluster, what)
                report.faults.append((fraction * duration_s, done))
                log(f"scale soak: {done} in {time.monotonic() - started:.1f}s")
            traffic.sleep_until(duration_s)
        finally:
            traffic.finish(report)
        check_acknowledged(oracle, writers, report)
        report.verify_rc, report.verify_output = flask_verify(envs[0])
        report.workers_after = sum(len(instance.worker_pids()) for instance in instances)
        for url in urls:
            _, response = call(url, "GET", FACETS_PATH.format(org=ORG), headers=owner.headers)
            if response is None or response.status_code != 200:
                report.problems.append(f"facets from {url} after the soak: {response}")
        cross_reads = sum(writer.cross_reads for writer in writers)
        proxy.stop()
        served = proxied_by_upstream(work_dir / "nginx.log")
        for instance in instances:
            if not served.get(f"127.0.0.1:{instance.port}"):
                report.problems.append(f"the proxy sent no request to {instance.base_url}")
    finally:
        if proxy is not None:
            proxy.stop()
        for instance in instances:
            instance.stop()
        cluster.stop()
        if oracle is not None:
            oracle.dispose()
        database.drop()
    return report, cross_reads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=SHORT_S, help="seconds of traffic")
    add_database_url(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-rate-limits", action="store_true", help="RATE_LIMITS_ENABLED=false")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="facets-scale-") as tmp:
        report, cross_reads = run_scale_soak(
            args.database_url,
            args.duration,
            Path(tmp),
            args.seed,
            rate_limits=not args.no_rate_limits,
        )
        print(report.summary())
        print(f"cross-instance reads judged: {cross_reads}")
        for failure in report.failures()[:50]:
            print(f"FAIL {failure}")
    return 1 if report.failures() or not cross_reads else 0


if __name__ == "__main__":
    sys.exit(main())
