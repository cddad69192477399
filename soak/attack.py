"""Slow clients and the prober that watches whether everyone else is still served.

``SlowSockets`` holds ``count`` sockets of one kind open against a server from one thread,
reopening any the server closes (an attacker reconnects), until stopped:

- ``headers``: a request line, then one header line every ``TICK_S``, never the blank line;
- ``body``: a whole authenticated POST head with ``Content-Length``, then one body byte
  every ``TICK_S``;
- ``idle``: a connection that sends nothing.

``Prober`` sends an authenticated facets call on a fresh connection every ``INTERVAL_S`` (the
next one right after a slow one) and records each latency or failure (no answer within
``PROBE_TIMEOUT_S``, or any status but 200). Everything is bounded: the sockets by ``count``,
the probes by ``max_probes``.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

KINDS = ("headers", "body", "idle")
TICK_S = 5.0
INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 5.0
BODY_LENGTH = 10_000
CONNECT_TIMEOUT_S = 1.0


class SlowSockets(threading.Thread):
    """``count`` slow sockets of ``kind`` against ``host:port`` while running."""

    def __init__(self, host: str, port: int, kind: str, count: int, org: str, key: str) -> None:
        super().__init__(name=f"slow-{kind}", daemon=True)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.address = (host, port)
        self.kind, self.count = kind, count
        self.org, self.key = org, key
        self.stop_event = threading.Event()
        self.sockets: list[socket.socket | None] = [None] * count
        self.opened = self.reopened = 0

    def _first_bytes(self) -> bytes:
        if self.kind == "headers":
            return f"GET /api/v1/org/{self.org}/sandboxes/facets HTTP/1.1\r\n".encode()
        if self.kind == "body":
            return (
                f"POST /api/v1/org/{self.org}/projects HTTP/1.1\r\nHost: slow\r\n"
                f"Authorization: Bearer {self.key}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {BODY_LENGTH}\r\n\r\n"
            ).encode()
        return b""

    def _tick_bytes(self, n: int) -> bytes:
        if self.kind == "headers":
            return f"X-Slow-{n}: {n}\r\n".encode()
        return b"x" if self.kind == "body" else b""

    def _open(self, i: int) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT_S)
        except OSError:
            return  # tried again at the next tick
        sock.setblocking(False)
        self.sockets[i] = sock
        self.opened += 1
        self._send(i, self._first_bytes())

    def _send(self, i: int, data: bytes) -> None:
        sock = self.sockets[i]
        if sock is None or not data:
            return
        try:
            sock.send(data)
        except BlockingIOError:  # the server's buffer is full: it is not reading
            pass
        except OSError:
            self._drop(i)

    def _drop(self, i: int) -> None:
        sock, self.sockets[i] = self.sockets[i], None
        if sock is not None:
            sock.close()

    def _closed_by_server(self, i: int) -> bool:
        sock = self.sockets[i]
        if sock is None:
            return True
        try:
            sock.recv(4096)  # an answer (a 408, a 401) or the server's FIN: it is done
            return True
        except BlockingIOError:
            return False
        except OSError:
            return True

    def run(self) -> None:
        for i in range(self.count):
            if self.stop_event.is_set():
                break
            self._open(i)
        n = 0
        while not self.stop_event.wait(TICK_S):
            n += 1
            for i in range(self.count):
                if self._closed_by_server(i):
                    self._drop(i)
                    self._open(i)
                    self.reopened += 1
                else:
                    self._send(i, self._tick_bytes(n))

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=TICK_S + 5)
        for i in range(self.count):
            self._drop(i)


@dataclass
class Probes:
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.latencies_ms) + len(self.failures)

    def percentile(self, p: float) -> float | None:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(p) - 1]


class Prober(threading.Thread):
    """An authenticated facets call every ``INTERVAL_S`` against ``host:port`` while running."""

    def __init__(self, host: str, port: int, org: str, key: str, max_probes: int) -> None:
        super().__init__(name="prober", daemon=True)
        self.host, self.port = host, port
        self.path = f"/api/v1/org/{org}/sandboxes/facets"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.max_probes = max_probes
        self.stop_event = threading.Event()
        self.probes = Probes()

    def probe_once(self) -> None:
        started = time.perf_counter()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=PROBE_TIMEOUT_S)
        try:
            conn.request("GET", self.path, headers=self.headers)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                self.probes.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                self.probes.failures.append(f"status {response.status}")
        except (OSError, http.client.HTTPException) as error:
            self.probes.failures.append(type(error).__name__)
        finally:
            conn.close()

    def run(self) -> None:
        while self.probes.sent < self.max_probes and not self.stop_event.is_set():
            started = time.monotonic()
            self.probe_once()
            self.stop_event.wait(max(0.0, INTERVAL_S - (time.monotonic() - started)))

    def stop(self) -> Probes:
        self.stop_event.set()
        self.join(timeout=PROBE_TIMEOUT_S + 5)
        return self.probes


def probe_while(seconds: float, host: str, port: int, org: str, key: str) -> Probes:
    """Probe ``host:port`` for ``seconds`` (bounded: at most one probe per interval)."""
    prober = Prober(host, port, org, key, max_probes=int(seconds / INTERVAL_S) + 1)
    prober.start()
    prober.join(timeout=seconds)
    return prober.stop()


def settle(host: str, port: int, org: str, key: str, max_s: float = 40.0) -> bool:
    """Probe until three in a row are served (the server is over the last attack), or
    ``max_s`` passed; whether it settled."""
    prober = Prober(host, port, org, key, max_probes=int(max_s / INTERVAL_S))
    deadline = time.monotonic() + max_s
    in_a_row = 0
    while in_a_row < 3 and time.monotonic() < deadline:
        failed = len(prober.probes.failures)
        prober.probe_once()
        in_a_row = 0 if len(prober.probes.failures) > failed else in_a_row + 1
        time.sleep(INTERVAL_S)
    return in_a_row >= 3


def attacked_probes(
    seconds: float, host: str, port: int, org: str, key: str, count: int, kinds=KINDS
) -> tuple[Probes, list[SlowSockets]]:
    """Probe for ``seconds`` while ``count`` slow sockets of each of ``kinds`` are held."""
    attackers = [SlowSockets(host, port, kind, count, org, key) for kind in kinds]
    for attacker in attackers:
        attacker.start()
    try:
        time.sleep(1.0)  # let every socket connect and send its first bytes
        return probe_while(seconds, host, port, org, key), attackers
    finally:
        for attacker in attackers:
            attacker.stop()
