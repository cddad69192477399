"""A JSON body is used whole or refused: its media type, its framing and its length.

In-process, the WSGI environ says what gunicorn's would (``wsgi.input_terminated``: the server
has framed the body, chunked or not); one test sends broken chunked bodies to a real gunicorn.
"""

from __future__ import annotations

import shutil
import socket

import pytest
from conftest import JWT_SECRET, World, gunicorn_running, raw_exchange
from gunicorn.http.errors import InvalidChunkSize

from facets import create_app
from facets.extensions import state

MAX_BODY = 1024


@pytest.fixture
def acme(make_app):
    """An app taking bodies of up to 1 KiB, the org ``acme``, its owner and a sandbox."""
    app = make_app(MAX_CONTENT_LENGTH=MAX_BODY)
    world = World(app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    sandbox_id = world.sandboxes("acme")[0]
    return app.test_client(), owner.headers, sandbox_id


def _envelope(response, status: int, type_: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["code"] == status
    assert response.json["type"] == type_
    return response.json["detail"]


def _sandbox_state(client, headers, sandbox_id) -> str:
    listed = client.get("/api/v1/org/acme/sandboxes", headers=headers).json["sandboxes"]
    return next(s["state"] for s in listed if s["id"] == str(sandbox_id))


def _project_keys(client, headers) -> list[str]:
    listed = client.get("/api/v1/org/acme/projects", headers=headers).json
    return [p["key"] for p in listed["projects"]]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None],
)
def test_a_body_that_is_not_declared_json_is_refused_not_ignored(acme, content_type):
    client, headers, sandbox_id = acme
    url = f"/api/v1/org/acme/sandboxes/{sandbox_id}"
    headers = {**headers, **({"Content-Type": content_type} if content_type else {})}
    response = client.patch(url, data=b'{"state": "killed"}', headers=headers)
    assert "Content-Type: application/json" in _envelope(response, 400, "invalid_error")
    assert _sandbox_state(client, acme[1], sandbox_id) == "running"
    create = client.post("/api/v1/org/acme/sandboxes", data=b'{"state": "paused"}', headers=headers)
    _envelope(create, 400, "invalid_error")
    project = client.post(
        "/api/v1/org/acme/projects", data=b'{"key": "ml", "name": "ML"}', headers=headers
    )
    _envelope(project, 400, "invalid_error")
    assert "ml" not in _project_keys(client, acme[1])


def test_no_body_with_any_content_type_is_still_no_body(acme):
    client, headers, _ = acme
    response = client.post(
        "/api/v1/org/acme/sandboxes", headers={**headers, "Content-Type": "text/plain"}
    )
    assert response.status_code == 201, response.json
    assert response.json["state"] == "running"


def test_a_chunked_body_over_the_limit_is_413_not_cut_to_the_limit(acme):
    client, headers, _ = acme
    name = "x" * (MAX_BODY - 40)  # the body's first MAX_BODY bytes would be valid JSON
    body = b'{"key": "big", "name": "' + name.encode() + b'"}' + b" " * 200
    response = client.post(
        "/api/v1/org/acme/projects",
        data=body,
        content_type="application/json",
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    )
    assert f"larger than the {MAX_BODY} bytes" in _envelope(response, 413, "invalid_error")
    assert "big" not in _project_keys(client, headers)


def test_a_chunked_body_under_the_limit_is_taken(acme):
    client, headers, _ = acme
    response = client.post(
        "/api/v1/org/acme/projects",
        json={"key": "small", "name": "Small"},
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    )
    assert response.status_code == 201, response.json


def test_a_body_shorter_than_its_content_length_is_400_not_used(acme):
    client, headers, sandbox_id = acme
    response = client.patch(
        f"/api/v1/org/acme/sandboxes/{sandbox_id}",
        data=b'{"state": "paused"}',  # 19 bytes, the connection then ends
        content_type="application/json",
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": "100"},
    )
    assert "ended before its Content-Length" in _envelope(response, 400, "invalid_error")
    assert _sandbox_state(client, headers, sandbox_id) == "running"


class _BrokenChunks:
    """A ``wsgi.input`` whose chunked framing gunicorn cannot parse."""

    def read(self, *_):
        raise InvalidChunkSize(b"zz")

    readline = read


def test_a_body_whose_framing_breaks_is_400(acme):
    client, headers, _ = acme
    response = client.post(
        "/api/v1/org/acme/projects",
        content_type="application/json",
        headers=headers,
        environ_overrides={
            "wsgi.input": _BrokenChunks(),
            "wsgi.input_terminated": True,
            "HTTP_TRANSFER_ENCODING": "chunked",
        },
    )
    assert "framing is broken" in _envelope(response, 400, "invalid_error")


@pytest.fixture
def served_acme(tmp_path, sqlite_template):
    """gunicorn on a migrated SQLite file holding ``acme`` and its owner; (base URL, key)."""
    db_path = tmp_path / "facets.sqlite3"
    shutil.copy(sqlite_template, db_path)
    config = {"DATABASE_URL": f"sqlite:///{db_path}", "JWT_SECRET": JWT_SECRET}
    app = create_app({**config, "TESTING": True, "REDIS_URL": "fakeredis://"})
    world = World(app)
    world.org("acme")
    key = world.caller("acme", "owner").key
    with app.app_context():
        state().db.dispose()
    with gunicorn_running(config, tmp_path / "gunicorn.log") as base:
        yield base, key


def _raw_post(base: str, path: str, key: str, head: str, body: bytes):
    """POST ``body`` as is (its framing included) after the request line and ``head``."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nConnection: close\r\n{head}\r\n"
    ).encode()
    return raw_exchange(base, request + body)


@pytest.mark.parametrize(
    "body",
    [b"zz\r\n{}\r\n0\r\n\r\n", b'5\r\n{"a":1}0\r\n\r\n'],
    ids=["bad-chunk-size", "chunk-missing-terminator"],
)
def test_under_gunicorn_a_broken_chunked_body_is_400_not_500(served_acme, body):
    base, key = served_acme
    status, _, reply = _raw_post(
        base, "/api/v1/org/acme/projects", key, "Transfer-Encoding: chunked\r\n", body
    )
    assert status == 400, reply
    assert b'"type":"invalid_error"' in reply


def test_under_gunicorn_a_chunked_body_over_the_limit_is_413(served_acme):
    base, key = served_acme
    name = b"x" * 70_000  # over the default 64 KiB
    payload = b'{"key": "big", "name": "' + name + b'"}'
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (payload[i : i + 8192] for i in range(0, len(payload), 8192))
    )
    status, _, reply = _raw_post(
        base,
        "/api/v1/org/acme/projects",
        key,
        "Transfer-Encoding: chunked\r\n",
        chunked + b"0\r\n\r\n",
    )
    assert status == 413, reply[:300]


# --- the connection after a refused body ----------------------------------------------------


def test_a_413_says_the_connection_closes(acme):
    client, headers, _ = acme
    response = client.post("/api/v1/org/acme/projects", data=b"x" * (MAX_BODY + 1), headers=headers)
    _envelope(response, 413, "invalid_error")
    assert response.headers["Connection"] == "close"


def _one_response_then(base: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh connection and read one response (framed by its
    Content-Length); then send ``GET /healthz`` on the same connection: its reply, or
    ``b""`` when the server had closed the connection."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(raw)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
        head, _, body = reply.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        while len(body) < int(headers["content-length"]):
            body += sock.recv(65536)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            after = b""
            while chunk := sock.recv(65536):
                after += chunk
        except (BrokenPipeError, ConnectionResetError):
            after = b""
    return int(status_line.split()[1]), headers, after


def _chunked(payload: bytes) -> bytes:
    return b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (payload[i : i + 8192] for i in range(0, len(payload), 8192))
    )


def test_under_gunicorn_a_413_says_connection_close_and_closes(served_acme):
    base, key = served_acme
    # Chunks a little past the limit and no last chunk: the app stops reading at the limit.
    payload = _chunked(b'{"key": "big", "name": "' + b"x" * 65_536)[: 65_536 + 200]
    head = (
        f"POST /api/v1/org/acme/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    status, headers, after = _one_response_then(base, head + payload)
    assert status == 413
    assert headers["connection"] == "close"
    assert after == b""


@pytest.mark.parametrize(
    ("length", "connection"), [(100_000, "close"), (10, "keep-alive")], ids=["large", "small"]
)
def test_under_gunicorn_an_unread_body_says_whether_the_connection_lasts(
    served_acme, length, connection
):
    base, _ = served_acme
    raw = (
        f"POST /api/v1/org/acme/projects HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    # Only a small body is sent: a large one would still be arriving when the server closes.
    status, headers, after = _one_response_then(base, raw + (b"x" * 10 if length == 10 else b""))
    assert status == 401  # no credential: the body is never read
    assert headers["connection"] == connection
    if connection == "close":
        assert after == b""
    else:
        assert after.startswith(b"HTTP/1.1 200 ")
