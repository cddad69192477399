"""JSON in and out with orjson: the app's provider, and the parser of request bodies.

Every JSON body the app sends (marshmallow dumps, error envelopes, the facets' directly
built bodies) goes through ``OrjsonProvider``: compact, keys sorted, one trailing newline, so
two equal objects always produce identical bytes. Every JSON body the API reads goes through
``JsonBodyParser``, which refuses what no stored or sent text can hold, and reads the body
whole or not at all: a body is never used cut short (``request_body``). A body refused as
too large or unreadable leaves the connection in no state for another request: those errors
say ``Connection: close`` (and gunicorn then closes it, ``facets.edge.server_errors``).
"""

from __future__ import annotations

from typing import Any

import orjson
from gunicorn.http.errors import ParseException

from flask import Request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps_body(obj: Any, default=None) -> bytes:
    """The bytes of a JSON body as the app sends every one: compact, keys sorted, a newline."""
    return orjson.dumps(obj, default=default, option=OPTIONS) + b"\n"


class OrjsonProvider(DefaultJSONProvider):
    """flask's JSON provider API on orjson (falling back to flask's default for odd types)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default, option=OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(dumps_body(obj, self.default), mimetype=self.mimetype)


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, reading JSON bodies with orjson rather than ``json.loads``.

    The standard library accepts lone UTF-16 surrogates (``"\\ud800"``), which neither the
    database drivers nor the response encoder can take, and raises ``RecursionError`` on deep
    nesting; orjson refuses both (over 1,024 levels), so they are malformed bodies (400) like
    any other. An empty body is no body, as webargs has it; invalid UTF-8 is malformed.
    """

    def _raw_load_json(self, req: Request) -> Any:
        body = request_body(req)
        if not body:
            return core.missing
        if not is_json_request(req):  # webargs would read it as no body at all
            raise BadRequest("Send the body as JSON, with 'Content-Type: application/json'.")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as error:
            self._handle_invalid_json_error(error, req)


class _ClosesConnection:
    """An HTTP error after which the connection closes: the rest of the body stays unread."""

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), ("Connection", "close")]


class BodyTooLarge(_ClosesConnection, RequestEntityTooLarge):
    """413: the body is over ``MAX_CONTENT_LENGTH``; the connection closes."""


class BodyUnreadable(_ClosesConnection, BadRequest):
    """400: the body's framing is broken or it ended early; the connection closes."""


def request_body(req: Request) -> bytes:
    """The whole body of ``req``, or the error that says why it cannot be had whole.

    werkzeug reads a body without ``Content-Length`` (chunked, behind gunicorn) up to
    ``MAX_CONTENT_LENGTH`` and stops there without a word, and gunicorn hands over what came
    before an early end of a ``Content-Length`` body; either would be used cut short. So a
    body of no declared length that reaches the limit is refused as too large (one of exactly
    the limit too: what follows it cannot be told without reading on), and one shorter than
    its declared length as malformed.

    :raise BodyUnreadable: the body's framing is broken, or it ended early (400).
    :raise BodyTooLarge: it is larger than ``MAX_CONTENT_LENGTH`` (413).
    """
    try:
        body = req.get_data(cache=True)
    except RequestEntityTooLarge as error:  # werkzeug's: a declared length over the limit
        raise BodyTooLarge() from error
    except BadRequest as error:  # werkzeug's: the client went away mid-body
        raise BodyUnreadable(error.description) from error
    except (ParseException, OSError) as error:  # gunicorn's reading of a broken chunked body
        detail = "The request body could not be read: its framing is broken."
        raise BodyUnreadable(detail) from error
    limit = req.max_content_length
    declared = req.content_length
    if declared is None and limit is not None and len(body) >= limit:
        raise BodyTooLarge()
    if declared is not None and len(body) < declared:
        raise BodyUnreadable("The request body ended before its Content-Length.")
    return body
