"""Requests gunicorn refuses before the app sees them still get the error envelope."""

from __future__ import annotations

import json

import pytest
from conftest import gunicorn_running, raw_exchange

from facets.edge.server_errors import envelope_bytes

SECRET = "sk_live_secret_in_a_broken_header"


@pytest.fixture
def server(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'facets.sqlite3'}", "JWT_SECRET": "x" * 40}
    with gunicorn_running(env, tmp_path / "gunicorn.log") as base:
        yield base, tmp_path / "gunicorn.log"


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # a lower-case method
        (f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuth orization: {SECRET}\r\n\r\n".encode(), 400),
        (f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\x00\r\n\r\n".encode(), 400),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-H: 1\r\n" * 120 + b"\r\n", 431),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ],
    ids=[
        "method",
        "header-name",
        "header-value",
        "request-line",
        "header-size",
        "header-count",
        "coding",
    ],
)
def test_a_request_gunicorn_refuses_gets_the_envelope(server, raw, status):
    base, log_path = server
    got, headers, body = raw_exchange(base, raw)
    assert got == status
    assert headers["content-type"] == "application/json"
    envelope = json.loads(body)
    assert envelope["code"] == status
    assert envelope["type"] == ("server_error" if status >= 500 else "invalid_error")
    assert envelope["detail"]
    assert SECRET not in body.decode()
    assert SECRET not in log_path.read_text()  # gunicorn's warning names the error, not values


def test_the_envelope_is_a_whole_closing_response():
    raw = envelope_bytes(414, "URI Too Long")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {
        "code": 414,
        "detail": "The request line (method, path and query) is too long.",
        "type": "invalid_error",
    }
