"""The traffic benchmark's clients: polling dashboards and sandbox writers over keep-alive
connections, each tallying its requests' latencies and statuses (``bench.traffic`` runs them).

A writer owns the sandboxes it creates (one per org), so its writes never race another's. A
dashboard logs every answer it gets, for ``bench.traffic_check`` to judge after the phase.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field

from bench.floor import FLOOR_PATH
from bench.traffic_check import Answer
from facets.counts.etag import VERSION_HEADER

HOT_RETRY_S = 0.01  # a hot-org writer refused with 429 tries again after this


@dataclass
class Tally:
    """Latencies (ms) and statuses of one kind of request in one phase."""

    ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, ms: float, status: int) -> None:
        self.ms.append(ms)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def summary(self, seconds: float) -> dict:
        ok = sorted(self.ms)
        if not ok:
            return {"n": 0}

        def pct(q: float) -> float:
            return round(ok[min(len(ok) - 1, int(q * len(ok)))], 2)

        return {
            "n": len(ok),
            "per_s": round(len(ok) / seconds, 1),
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "statuses": dict(sorted(self.statuses.items())),
        }


@dataclass(frozen=True)
class Org:
    slug: str
    key: str
    weight: float


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(
        self,
        method: str,
        path: str,
        key: str,
        body: dict | None = None,
        headers: dict | None = None,
    ) -> tuple[int, dict, bytes, float]:
        all_headers = {"Authorization": f"Bearer {key}", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=payload, headers=all_headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return 0, {}, b"", (time.perf_counter() - started) * 1000
        ms = (time.perf_counter() - started) * 1000
        return response.status, dict(response.getheaders()), data, ms


def toggle(client: Client, org: Org, mine: dict[str, list], tally: Tally) -> int:
    """A sandbox write on ``org``: create the thread's own sandbox, else flip its state."""
    path = f"/api/v1/org/{org.slug}/sandboxes"
    own = mine.get(org.slug)
    if own is None:
        status, _, data, ms = client.call("POST", path, org.key, {"state": "running"})
        if status == 201:
            mine[org.slug] = [json.loads(data)["id"], "running"]
    else:
        new = "paused" if own[1] == "running" else "running"
        status, _, _, ms = client.call("PATCH", f"{path}/{own[0]}", org.key, {"state": new})
        if status == 200:
            own[1] = new
    tally.add(ms, status)
    return status


def dashboard(
    port: int,
    orgs: list[Org],
    share: float,
    seed: int,
    stop: threading.Event,
    reads: Tally,
    writes: Tally,
    answers: list[Answer],
) -> None:
    """Poll Zipf-chosen orgs' owner view with ``If-None-Match``, writing at ``share`` of the
    requests; every 200 and 304 is logged in ``answers`` to be judged after the phase."""
    rng = random.Random(seed)
    client, etags, mine = Client(port), {}, {}
    weights = [o.weight for o in orgs]
    while not stop.is_set():
        (org,) = rng.choices(orgs, weights)
        if share and rng.random() < share:
            toggle(client, org, mine, writes)
            continue
        path = f"/api/v1/org/{org.slug}/sandboxes/facets"
        headers = {"If-None-Match": etags[org.slug]} if org.slug in etags else {}
        status, got, data, ms = client.call("GET", path, org.key, headers=headers)
        if status == 200 and "ETag" in got:
            etags[org.slug] = got["ETag"]
        if status in (200, 304):
            version = int(got.get(VERSION_HEADER, -1))
            body = data if status == 200 else None
            answers.append(Answer(org.slug, status, version, got.get("ETag", ""), body))
        reads.add(ms, status)
    client.conn.close()


def floor_reader(port: int, stop: threading.Event, reads: Tally) -> None:
    """The floor endpoint (``bench.floor``: the framework, no auth, SQL or Redis), polled over
    one keep-alive connection: what the dashboards' figures are set beside."""
    client = Client(port)
    while not stop.is_set():
        status, _, _, ms = client.call("GET", FLOOR_PATH, "")
        reads.add(ms, status)
    client.conn.close()


def hot_writer(port: int, org: Org, stop: threading.Event, writes: Tally) -> None:
    client, mine = Client(port), {}
    while not stop.is_set():
        if toggle(client, org, mine, writes) == 429:
            time.sleep(HOT_RETRY_S)
    client.conn.close()
