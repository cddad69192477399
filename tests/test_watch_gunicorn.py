"""Waiting reads under the production server: gunicorn (gevent workers, ``gunicorn.conf.py``)
on the real leg's PostgreSQL and Redis, its after-commit hooks publishing on Redis pub/sub.

200 watchers wait on a gunicorn of 2 workers: ordinary calls are still answered, a write
wakes exactly the watchers whose view it changed, and the others keep waiting until a write
in their view. The client is asyncio over raw sockets, so 200 requests cost no threads here.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import acme_org
import pytest
from acme_org import SLUG
from conftest import JWT_SECRET, TEST_REDIS_URL, World, gunicorn_running

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.watchers import http  # noqa: E402  (the bench's raw asyncio HTTP client)

METRICS_TOKEN = "metrics-token-watch"
WATCHERS_PER_VIEW = 100
FACETS = f"/api/v1/org/{SLUG}/sandboxes/facets"


async def metric(port: int, name: str) -> float:
    status, _, body = await http(
        port, "GET", "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 200
    match = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    return float(match.group(1)) if match else 0.0


async def until_metric(port: int, name: str, value: float) -> None:
    for _ in range(600):  # bounded: 600 x 50 ms
        if await metric(port, name) == value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached {value} (last {await metric(port, name)})")


@pytest.mark.leg("real")
def test_watchers_do_not_hold_the_slots_and_wake_only_on_their_view(app, tmp_path):
    world = World(app)
    acme = acme_org.build(world)
    ops_member = world.caller(SLUG, "member", projects_=[acme["ops"]])
    env = {
        "DATABASE_URL": app.config["DATABASE_URL"],
        "REDIS_URL": TEST_REDIS_URL,
        "JWT_SECRET": JWT_SECRET,
        "GUNICORN_WORKERS": "2",
        "RATE_LIMITS_ENABLED": "false",
        "METRICS_TOKEN": METRICS_TOKEN,
        "LOG_LEVEL": "warning",
    }
    with gunicorn_running(env, tmp_path / "gunicorn.log") as base:
        port = int(base.rsplit(":", 1)[1])
        asyncio.run(scenario(port, acme, ops_member))


async def scenario(port: int, acme: dict, ops_member) -> None:
    owner, member = acme["owner"].headers, acme["member"].headers
    ops = ops_member.headers

    async def facets(headers, **extra):
        return await http(port, "GET", FACETS + extra.pop("query", ""), {**headers, **extra})

    async def create(project: str) -> None:
        body = json.dumps({"project_id": str(acme[project]), "state": "running"}).encode()
        status, _, reply = await http(
            port,
            "POST",
            f"/api/v1/org/{SLUG}/sandboxes",
            {**owner, "Content-Type": "application/json"},
            body,
        )
        assert status == 201, reply

    _, member_first, _ = await facets(member)
    _, ops_first, _ = await facets(ops)

    def watch(headers, tag):
        return asyncio.create_task(facets(headers, query="?wait=60", **{"If-None-Match": tag}))

    web_watchers = [watch(member, member_first["etag"]) for _ in range(WATCHERS_PER_VIEW)]
    ops_watchers = [watch(ops, ops_first["etag"]) for _ in range(WATCHERS_PER_VIEW)]
    await until_metric(port, "facets_waiting_reads", 2 * WATCHERS_PER_VIEW)

    # ordinary calls are answered while 200 reads wait on 2 workers
    for headers in (owner, member, ops) * 4:
        status, _, _ = await facets(headers)
        assert status == 200

    await create("web")  # changes the member's view, not the ops member's
    web_answers = await asyncio.wait_for(asyncio.gather(*web_watchers), timeout=60)
    _, fresh_head, fresh_body = await facets(member)
    for status, fields, body in web_answers:
        assert status == 200
        assert body == fresh_body
        assert fields["etag"] == fresh_head["etag"] != member_first["etag"]
    assert not any(task.done() for task in ops_watchers), "a watcher woke for nothing"
    await until_metric(port, "facets_waiting_reads", WATCHERS_PER_VIEW)

    await create("ops")
    ops_answers = await asyncio.wait_for(asyncio.gather(*ops_watchers), timeout=60)
    _, _, ops_fresh = await facets(ops)
    assert all(status == 200 and body == ops_fresh for status, _, body in ops_answers)
    await until_metric(port, "facets_waiting_reads", 0)
