"""The error envelope for requests that gunicorn refuses before the app sees them.

gunicorn answers a request it cannot parse (a malformed request line or header, a request
line or headers over its limits, a broken chunked body) itself, with an HTML page written by
``gunicorn.util.write_error``, which only ``Worker.handle_error`` calls. ``install`` replaces
that writer, in a worker process, with one that sends the spec's ``APIErrorPayload`` like
every other error of the service. Its detail is fixed per status: gunicorn's own message can
quote the raw request line or header, and so a credential.
"""

from __future__ import annotations

import socket
from http import HTTPStatus

import gunicorn.util

from facets.errors import envelope_body
from facets.json import dumps_body

DETAILS = {
    400: "Malformed HTTP request: its request line, a header or the body's framing could not "
    "be parsed.",
    403: "This request is forbidden by the server's proxy settings.",
    414: "The request line (method, path and query) is too long.",
    417: "Unsupported Expect header: send the request without it.",
    431: "Too many request headers, or one too large.",
    501: "Unsupported Transfer-Encoding: send the body with Content-Length or chunked.",
}


def envelope_bytes(status: int, reason: str) -> bytes:
    """A whole HTTP/1.1 response carrying the envelope for ``status``, closing the connection."""
    body = dumps_body(envelope_body(status, DETAILS.get(status) or HTTPStatus(status).phrase))
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_envelope(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error``'s signature; ``mesg`` (gunicorn's text) is not sent."""
    gunicorn.util.write_nonblock(sock, envelope_bytes(status_int, reason))


def install() -> None:
    """Make this process's gunicorn worker answer the requests it refuses with the envelope."""
    gunicorn.util.write_error = write_envelope
