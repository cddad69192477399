"""gunicorn's side of the API's errors: the envelope for requests it refuses before the app
sees them, and ``Connection: close`` when the app says the connection ends.

gunicorn answers a request it cannot parse (a malformed request line or header, a request
line or headers over its limits, a broken chunked body) itself, with an HTML page written by
``gunicorn.util.write_error``, which only ``Worker.handle_error`` calls. ``install`` replaces
that writer, in a worker process, with one that sends the spec's ``APIErrorPayload`` like
every other error of the service. Its detail is fixed per status: gunicorn's own message can
quote the raw request line or header, and so a credential.

gunicorn drops a ``Connection`` header the app sets (a hop-by-hop header is the server's) and
writes its own, ``keep-alive`` unless it already means to close; yet after the response it
closes a connection whose unread body it cannot drain (more than 64 KiB left, or not within
5 s, or a body whose reading failed), as after a 413. ``install`` makes gunicorn say
``Connection: close``, and close, when the app's response says so (``facets.json`` does on
the errors that leave a body unread or unreadable) and when the request's unread body is
already known to be more than gunicorn will drain.
"""

from __future__ import annotations

import socket
from http import HTTPStatus

import gunicorn.util
from gunicorn.http import parser
from gunicorn.http.body import LengthReader
from gunicorn.http.wsgi import Response

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


def says_close(headers) -> bool:
    """Whether the app's response headers end the connection."""
    return any(
        name.lower() == "connection" and "close" in value.lower().replace(" ", "").split(",")
        for name, value in headers
    )


# What gunicorn's gthread worker drains of an unread body before it reuses the connection.
DRAIN_MAX_BYTES = getattr(parser, "_DRAIN_MAX_BYTES", 64 * 1024)


def body_left_unusable(req) -> bool:
    """Whether gunicorn will close the connection after answering ``req``: its body's reading
    failed, or more of it is left unread than gunicorn drains."""
    body = getattr(req, "body", None)
    if body is None:
        return False
    if getattr(body, "failed", False) is True:
        return True
    reader = getattr(body, "reader", None)
    return isinstance(reader, LengthReader) and reader.length > DRAIN_MAX_BYTES


def _process_headers_honouring_close(process_headers):
    def process(response: Response, headers) -> None:
        process_headers(response, headers)
        if says_close(headers) or body_left_unusable(response.req):
            response.force_close()  # default_headers then writes "Connection: close"

    process._facets_honours_close = True
    return process


def install() -> None:
    """Make this process's gunicorn worker answer the requests it refuses with the envelope,
    and close (saying so) the connections the app's responses close."""
    gunicorn.util.write_error = write_envelope
    if not getattr(Response.process_headers, "_facets_honours_close", False):
        Response.process_headers = _process_headers_honouring_close(Response.process_headers)
