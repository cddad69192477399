"""The soak's clients: facets readers that check each answer against SQL, sandbox writers that
record every acknowledged mutation, and the SQL oracle both are judged by.

Readers check an answer the moment it arrives: the response names its version
(``X-Facets-Version``) and the oracle (``soak.oracle``) computes the facets from SQL. Versions
only grow, so if the snapshot is still at that version it is exactly the state the answer
claims to count, and the bodies must be equal. If the version moved, the answer is
"unverifiable" (counted, not judged). Writers work in bursts separated by quiet gaps so that
most answers can be judged.

Each writer owns the sandboxes it creates, so the mutations of one sandbox are sequential and
its last acknowledged one is its final state. A mutation without an answer (the worker died
under it) leaves its sandbox "uncertain", and later writes to it are not judged.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

VERSION_HEADER = "X-Facets-Version"
REQUEST_TIMEOUT_S = 10
FACETS_PATH = "/api/v1/org/{org}/sandboxes/facets"
SANDBOXES_PATH = "/api/v1/org/{org}/sandboxes"


@dataclass(frozen=True)
class Caller:
    name: str
    key: str
    user_id: uuid.UUID
    sees_all: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Call:
    """One HTTP exchange as a client saw it (``status`` None: no answer, ``error`` says why)."""

    method: str
    path: str
    started: float
    ended: float
    status: int | None
    error: str | None = None


def call(base_url: str, method: str, path: str, **kwargs) -> tuple[Call, requests.Response | None]:
    """One request on a fresh connection, so a killed worker fails only requests it held."""
    started = time.monotonic()
    try:
        response = requests.request(method, base_url + path, timeout=REQUEST_TIMEOUT_S, **kwargs)
    except requests.RequestException as exc:
        return Call(method, path, started, time.monotonic(), None, type(exc).__name__), None
    return Call(method, path, started, time.monotonic(), response.status_code), response


@dataclass
class Observed:
    """What the readers saw and how it was judged."""

    calls: list[Call] = field(default_factory=list)
    verified: int = 0
    unverifiable: int = 0
    not_modified: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Mutation:
    """An acknowledged (2xx) mutation and the sandbox it returned (None for a delete)."""

    sandbox_id: uuid.UUID
    op: str
    sandbox: dict[str, Any] | None
    ended: float


@dataclass
class Written:
    """What a writer did: its calls, its acknowledged mutations, its uncertain sandboxes."""

    calls: list[Call] = field(default_factory=list)
    acknowledged: list[Mutation] = field(default_factory=list)
    uncertain: set[uuid.UUID] = field(default_factory=set)
    unacknowledged_creates: int = 0
    problems: list[str] = field(default_factory=list)


FILTERS: list[tuple[tuple[str, ...], str | None]] = [
    ((), None),
    (("running",), None),
    (("paused", "killed"), None),
    (("running", "paused"), None),
]


class Client(threading.Thread):
    """A soak client: ``once()`` up to ``max_requests`` times, pausing between, until stopped.

    A crash of the soak's own code ends the client and is recorded as a problem.
    """

    role = "client"
    pause_s = (0.0, 0.0)

    def __init__(self, *, stop, max_requests, seed, result) -> None:
        super().__init__(daemon=True)
        self.stop, self.max_requests = stop, max_requests
        self.rng = random.Random(seed)
        self.result = result

    def ready(self) -> bool:
        """Whether to go on (may wait for its turn)."""
        return not self.stop.is_set()

    def once(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        for _ in range(self.max_requests):
            if not self.ready():
                return
            try:
                self.once()
            except Exception as exc:  # a bug in the soak itself must not pass silently
                self.result.problems.append(f"{self.role} crashed: {exc!r}")
                return
            time.sleep(self.rng.uniform(*self.pause_s))


class Reader(Client):
    """Reads facets as one caller with assorted filters and judges every answer."""

    role = "reader"
    pause_s = (0.002, 0.01)

    def __init__(self, *, base_url, org, callers, projects, oracle, stop, max_requests, seed):
        super().__init__(stop=stop, max_requests=max_requests, seed=seed, result=Observed())
        self.base_url, self.org, self.callers, self.oracle = base_url, org, callers, oracle
        self.filters = FILTERS + [((), p) for p in projects] + [(("running",), projects[0])]
        self.seen: dict[tuple[str, str], tuple[str, dict]] = {}  # (caller, etag) -> (version, body)
        self.last_etag: dict[tuple, str] = {}

    def once(self) -> None:
        caller = self.rng.choice(self.callers)
        states, project_id = self.rng.choice(self.filters)
        params = [("state", s) for s in states]
        if len(states) > 1 and self.rng.random() < 0.5:
            params = [("state", ",".join(states))]
        if project_id is not None:
            params.append(("project_id", project_id))
        headers = dict(caller.headers)
        previous = self.last_etag.get((caller.name, states, project_id))
        if previous is not None and self.rng.random() < 0.3:
            headers["If-None-Match"] = f'"{previous}"'
        record, response = call(
            self.base_url, "GET", FACETS_PATH.format(org=self.org), params=params, headers=headers
        )
        self.result.calls.append(record)
        if response is None or response.status_code not in (200, 304):
            return
        etag = response.headers.get("ETag", "").strip('"')
        version = response.headers.get(VERSION_HEADER)
        if version is None or not etag:
            self.result.problems.append(
                f"{response.status_code} without {VERSION_HEADER} or ETag: {dict(response.headers)}"
            )
            return
        if response.status_code == 304:
            self.result.not_modified += 1
            # A tag is a digest of the view's body, valid across versions that leave the view
            # alone; the body it names is then judged at the 304's version like any other.
            known = self.seen.get((caller.name, etag))
            if known is None:
                self.result.problems.append(f"304 for ETag {etag} at version {version}: {known}")
                return
            body = known[1]
        else:
            body = response.json()
            self.seen[(caller.name, etag)] = (version, body)
        self.last_etag[(caller.name, states, project_id)] = etag
        sql_version, expected = self.oracle.facets(caller, states, project_id)
        if sql_version != int(version):
            self.result.unverifiable += 1
            return
        self.result.verified += 1
        if body != expected:
            self.result.mismatches.append(
                {
                    "caller": caller.name,
                    "states": states,
                    "project_id": project_id,
                    "status": response.status_code,
                    "version": version,
                    "body": body,
                    "expected": expected,
                    "at": record.ended,
                }
            )


class Writer(Client):
    """Creates, pauses/resumes/kills, moves and deletes its own sandboxes, while allowed."""

    role = "writer"
    pause_s = (0.01, 0.05)

    def __init__(self, *, base_url, org, caller, projects, allowed, stop, max_requests, seed):
        super().__init__(stop=stop, max_requests=max_requests, seed=seed, result=Written())
        self.base_url, self.org, self.caller, self.projects = base_url, org, caller, projects
        self.allowed = allowed
        self.mine: dict[uuid.UUID, dict[str, Any]] = {}

    def ready(self) -> bool:
        """Wait for a burst (``allowed``), unless stopped meanwhile."""
        while not self.allowed.wait(0.05):
            if self.stop.is_set():
                return False
        return super().ready()

    def once(self) -> None:
        live = [sid for sid, s in self.mine.items() if sid not in self.result.uncertain]
        changeable = [sid for sid in live if self.mine[sid]["state"] != "killed"]
        roll = self.rng.random()
        if not live or roll < 0.35:
            body: dict[str, Any] = {"project_id": self.rng.choice(self.projects)}
            if self.rng.random() < 0.3:
                body["state"] = "paused"
            self.mutate("create", "POST", None, body)
        elif roll < 0.85 and changeable:
            sid = self.rng.choice(changeable)
            current = self.mine[sid]
            if self.rng.random() < 0.5:
                state = {"running": "paused", "paused": "running"}[current["state"]]
                if self.rng.random() < 0.15:
                    state = "killed"
                self.mutate("state", "PATCH", sid, {"state": state})
            else:
                others = [p for p in self.projects if p != current["project_id"]]
                self.mutate("move", "PATCH", sid, {"project_id": self.rng.choice(others)})
        else:
            self.mutate("delete", "DELETE", self.rng.choice(live), None)

    def mutate(self, op: str, method: str, sandbox_id: uuid.UUID | None, body) -> None:
        path = SANDBOXES_PATH.format(org=self.org)
        if sandbox_id is not None:
            path += f"/{sandbox_id}"
        record, response = call(self.base_url, method, path, json=body, headers=self.caller.headers)
        self.result.calls.append(record)
        if response is None or not 200 <= response.status_code < 300:
            if sandbox_id is None:
                self.result.unacknowledged_creates += 1
            elif response is None or response.status_code >= 500:
                self.result.uncertain.add(sandbox_id)
            return
        if op == "delete":
            self.mine.pop(sandbox_id)
            returned = None
        else:
            returned = response.json()
            sandbox_id = uuid.UUID(returned["id"])
            self.mine[sandbox_id] = returned
        self.result.acknowledged.append(Mutation(sandbox_id, op, returned, record.ended))
