"""nginx from ``deploy/nginx.conf`` in front of gunicorn: slow clients starve nobody, the
request id passes through, and what nginx refuses itself is the API's envelope.

The stack tests run on the real leg's servers (a scratch database on its PostgreSQL, its
Redis), with one gunicorn and one nginx for the module; the refusal tests need nginx only.
Without nginx they skip, and fail under ``CI=true``. The slow-client attack here is a small,
bounded one (100 sockets of each kind for 8 s); the full one, with latencies, is
``python -m soak.slow_clients`` (README, Production).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import TEST_DATABASE_URL, TEST_REDIS_URL, free_port, require_installed

from facets.edge.server_errors import envelope_bytes
from soak.attack import attacked_probes
from soak.nginx import Nginx
from soak.slow_clients import MAX_CONTENT_LENGTH, ORG, proxied_stack

FACETS = f"/api/v1/org/{ORG}/sandboxes/facets"
PROJECTS = f"/api/v1/org/{ORG}/projects"


def require_nginx() -> None:
    found = shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK)
    require_installed([] if found else ["nginx"], "install it with: apt-get install -y nginx")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The real leg's servers behind the proxy, once for the module (``proxied_stack``: a
    scratch database seeded with the org ``soak`` and its owner)."""
    if not TEST_DATABASE_URL:
        pytest.skip("the real leg (TEST_DATABASE_URL) is not set")
    require_nginx()
    work_dir = tmp_path_factory.mktemp("proxied")
    redis_url = TEST_REDIS_URL or "fakeredis://"
    with proxied_stack(TEST_DATABASE_URL, redis_url, work_dir) as running:
        yield running, work_dir


def exchange(port: int, raw: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send ``raw`` (a whole request) on a fresh connection; one response read back."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.connect()
        conn.sock.sendall(raw)
        response = http.client.HTTPResponse(conn.sock, method="GET")
        response.begin()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())


def test_slow_clients_through_the_proxy_starve_no_other_caller(stack):
    running, _ = stack
    port, key = running.nginx.port, running.owner.key
    probes, attackers = attacked_probes(8, "127.0.0.1", port, ORG, key, 100)
    assert [a.opened >= 100 for a in attackers] == [True, True, True]
    assert probes.sent >= 20
    assert probes.failures == []


def test_the_request_id_passes_through_the_proxy(stack):
    running, work_dir = stack
    nginx, owner = running.nginx, running.owner
    status, headers, _ = get(nginx.port, FACETS, {**owner.headers, "X-Request-ID": "probe-42"})
    assert status == 200
    assert headers.get_all("X-Request-ID") == ["probe-42"]
    # None, or one the app would not keep: nginx makes one, the app keeps it, both log it.
    for sent in ({}, {"X-Request-ID": "not a sane id!"}):
        status, headers, _ = get(nginx.port, FACETS, {**owner.headers, **sent})
        assert status == 200
        (request_id,) = headers.get_all("X-Request-ID")
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        assert request_id in logged_request_ids(work_dir / "nginx.log", request_id)


def logged_request_ids(log: Path, expected: str, wait_s: float = 5.0) -> set[str]:
    """The request ids nginx's access log holds once ``expected`` is among them (or ``wait_s``
    has passed): nginx writes a request's line in its log phase, after the response has gone,
    so a fast client can read the response before the line is there."""
    deadline = time.monotonic() + wait_s
    while True:
        ids = {
            json.loads(line)["request_id"]
            for line in log.read_text().splitlines()
            if line.startswith("{")
        }
        if expected in ids or time.monotonic() > deadline:
            return ids
        time.sleep(0.02)


def test_a_body_over_the_limit_is_the_apps_413_envelope_from_nginx(stack):
    running, _ = stack
    nginx, gunicorn, owner = running.nginx, running.gunicorn, running.owner
    auth = owner.headers["Authorization"]
    raw = (
        f"POST {PROJECTS} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MAX_CONTENT_LENGTH + 1}\r\n\r\n"
    ).encode()
    status, headers, body = exchange(nginx.port, raw)
    assert status == 413
    assert headers["Connection"] == "close"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Request-ID"]
    # Byte for byte what the app itself answers (gunicorn straight, same request).
    app_status, _, app_body = exchange(gunicorn.port, raw)
    assert (status, body) == (app_status, app_body)


def test_readyz_answers_through_the_proxy(stack):
    running, _ = stack
    status, _, body = get(running.nginx.port, "/readyz", {})
    assert status == 200
    assert json.loads(body) == json.loads(get(running.gunicorn.port, "/readyz", {})[2])


@pytest.fixture(scope="module")
def lone_nginx(tmp_path_factory):
    """nginx in front of nothing (a port nobody listens on)."""
    require_nginx()
    log = tmp_path_factory.mktemp("nginx") / "nginx.log"
    nginx = Nginx(f"127.0.0.1:{free_port()}", log, MAX_CONTENT_LENGTH)
    nginx.start()
    yield nginx
    nginx.stop()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ],
    ids=["malformed", "request-line", "header-size", "coding"],
)
def test_what_nginx_refuses_is_the_same_envelope_as_gunicorns(lone_nginx, raw, status):
    got, headers, body = exchange(lone_nginx.port, raw)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert body == envelope_bytes(status, "-").partition(b"\r\n\r\n")[2]


def test_no_app_behind_the_proxy_is_a_502_envelope(lone_nginx):
    status, headers, body = get(lone_nginx.port, FACETS, {})
    assert status == 502
    assert headers["Retry-After"] == "1"
    envelope = json.loads(body)
    assert (envelope["code"], envelope["type"]) == (502, "bad_gateway_error")
