"""The herd after a full Redis loss, and Redis memory per org: ``python -m soak.herd``.

On a scratch PostgreSQL database and a private 3-master, 3-replica Redis Cluster
(``soak.cluster``), first ``--memory-orgs`` hashes of a 5-project org are installed directly
to measure the bytes per org (the masters' ``used_memory`` and ``MEMORY USAGE``); then
``--orgs`` orgs of 5 projects and ``--sandboxes`` sandboxes each are read
once through gunicorn (2 instances, as in ``soak.scale``) so that every org is warm. Then
the cluster is restarted empty and ``--clients`` threads read the orgs' facets in random
order, as fast as the instances answer; it reports how long until every org's hash is back
in Redis and how many recounts that cost (``facets_cache_recounts_total`` of both
instances). Bounded: it stops reading after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

from facets import create_app
from facets.extensions import state
from models import Role, migrate
from models.services import accounts, projects, sandboxes
from models.services.common import lock_access
from soak.cluster import LocalCluster
from soak.harness import add_database_url, app_config, server_env
from soak.servers import Gunicorn, ScratchDatabase
from soak.traffic import FACETS_PATH

STATES = ("running", "paused", "killed")


def seed(config: dict, orgs: int, per_org: int) -> tuple[list[tuple[str, uuid.UUID]], str]:
    """The orgs (slug, id), each with 5 projects and ``per_org`` sandboxes over them and no
    project, and the API key of a user who owns them all."""
    app = create_app(config)
    out = []
    with app.app_context():
        try:
            with state().unit_of_work() as uow:
                user = accounts.create_user(uow, email="herd@example.com")
            for i in range(orgs):
                slug = f"herd{i:04d}"
                with state().unit_of_work() as uow:
                    org_id = accounts.create_org(uow, slug=slug).id
                    accounts.add_member(uow, org_slug=slug, email=user.email, role=Role.OWNER)
                with state().unit_of_work() as uow:
                    access = lock_access(uow, org_slug=slug, user_id=user.id)
                    ids = [
                        projects.create_project(uow, access=access, key=f"p{k}", name=f"P{k}").id
                        for k in range(5)
                    ]
                with state().unit_of_work() as uow:
                    access = lock_access(uow, org_slug=slug, user_id=user.id)
                    for n in range(per_org):
                        sandboxes.create_sandbox(
                            uow,
                            access=access,
                            project_id=[*ids, None][n % 6],
                            state=STATES[n % 2],
                        )
                out.append((slug, org_id))
            with state().unit_of_work() as uow:
                key = accounts.create_api_key(uow, email=user.email).key
        finally:
            state().db.dispose()
    return out, key


def memory_per_org(cluster: LocalCluster, orgs: int) -> tuple[float, float]:
    """Masters' ``used_memory`` growth and ``MEMORY USAGE`` per org, for ``orgs`` hashes of a
    5-project org (12 cells: 2 states x 6 project slots) installed on the empty cluster and
    deleted after."""
    from facets.counts.cache import CounterCache
    from facets.extensions import make_redis
    from models.recount import Recount

    client = make_redis(cluster.url)
    try:
        cache = CounterCache(client)
        cells = {}
        for i, project in enumerate([*(uuid.uuid4() for _ in range(5)), None]):
            cells[("running", project)], cells[("paused", project)] = 6 + i, 4
        cache.install(uuid.uuid4(), Recount(1, cells))  # the scripts are loaded before

        def used() -> int:
            return sum(
                cluster.node_info(p, "memory")["used_memory"] for p in cluster.master_ports()
            )

        before = used()
        org_ids = [uuid.uuid4() for _ in range(orgs)]
        for org_id in org_ids:
            cache.install(org_id, Recount(7, cells))
        grown = (used() - before) / orgs
        usage = cluster.memory_usage(org_ids[:1000]) / min(orgs, 1000)
        client.flushall()
    finally:
        client.close()
    return grown, usage


def recounts(urls: list[str]) -> float:
    """``facets_cache_recounts_total`` summed over the instances."""
    total = 0.0
    for url in urls:
        text = requests.get(f"{url}/metrics", timeout=10).text
        total += sum(
            float(m) for m in re.findall(r"^facets_cache_recounts_total (\S+)$", text, re.M)
        )
    return total


def warm_orgs(cluster: LocalCluster, org_ids: list[uuid.UUID]) -> int:
    """How many of the orgs have their ``cells`` hash in the cluster."""
    from facets.extensions import make_redis

    client = make_redis(cluster.url)
    try:
        return sum(bool(client.exists(f"facets:{{{org_id}}}:cells")) for org_id in org_ids)
    finally:
        client.close()


def read_all(urls, orgs, key, clients, deadline_s, stop_when) -> int:
    """``clients`` threads read the orgs' facets in random order until ``stop_when()`` or
    the deadline; returns the number of requests."""
    stop = threading.Event()
    counts = [0] * clients

    def reader(i: int) -> None:
        rng = random.Random(i)
        session = requests.Session()
        order = list(orgs)
        while not stop.is_set():
            rng.shuffle(order)
            for slug, _ in order:
                if stop.is_set():
                    return
                url = urls[(i + counts[i]) % len(urls)] + FACETS_PATH.format(org=slug)
                session.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
                counts[i] += 1

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not stop_when():
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(30)
    return sum(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=200)
    parser.add_argument("--sandboxes", type=int, default=60, help="per org")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--memory-orgs", type=int, default=20000)
    add_database_url(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="facets-herd-") as tmp:
        work = Path(tmp)
        database = ScratchDatabase(args.database_url, prefix="facets_herd")
        cluster = LocalCluster(work / "cluster")
        instances: list[Gunicorn] = []
        database.create()
        try:
            migrate.upgrade(database.url)
            cluster.start()
            grown, usage = memory_per_org(cluster, args.memory_orgs)
            print(
                f"redis memory of a 5-project org (12 cells), {args.memory_orgs} orgs: "
                f"used_memory +{grown:.0f} B/org on the masters, MEMORY USAGE of "
                f"cells+totals {usage:.0f} B/org (replicas hold as much again)"
            )
            envs = [
                {
                    **server_env(database.url, cluster.url, work / f"prometheus-{i}"),
                    "GUNICORN_WORKERS": "2",
                    "RATE_LIMITS_ENABLED": "false",  # the herd is the subject, not the limits
                    "METRICS_PUBLIC": "true",
                }
                for i in range(2)
            ]
            orgs, key = seed(app_config(envs[0]), args.orgs, args.sandboxes)
            org_ids = [org_id for _, org_id in orgs]
            instances = [Gunicorn(env, work / f"gunicorn-{i}.log") for i, env in enumerate(envs)]
            for instance in instances:
                instance.start()
            urls = [instance.base_url for instance in instances]

            def all_warm() -> bool:
                return warm_orgs(cluster, org_ids) == len(orgs)

            read_all(urls, orgs, key, 1, args.timeout, all_warm)  # every org warm
            cluster.restart_empty()
            before = recounts(urls)
            started = time.monotonic()
            requests_made = read_all(
                urls,
                orgs,
                key,
                args.clients,
                args.timeout,
                all_warm,
            )
            elapsed = time.monotonic() - started
            warm = warm_orgs(cluster, org_ids)
            spent = recounts(urls) - before
            print(
                f"herd: {warm}/{len(orgs)} orgs warm {elapsed:.2f} s after the cluster came "
                f"back empty; {spent:.0f} recounts ({spent / len(orgs):.2f} per org); "
                f"{requests_made} requests from {args.clients} clients"
            )
        finally:
            for instance in instances:
                instance.stop()
            cluster.stop()
            database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
