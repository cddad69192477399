"""JSON in and out with orjson: the app's provider, and the parser of request bodies.

Every JSON body the app sends (marshmallow dumps, error envelopes, the facets' directly
built bodies) goes through ``OrjsonProvider``: compact, keys sorted, one trailing newline, so
two equal objects always produce identical bytes. Every JSON body the API reads goes through
``JsonBodyParser``, which refuses what no stored or sent text can hold.
"""

from __future__ import annotations

from typing import Any

import orjson

from flask import Request
from flask.json.provider import DefaultJSONProvider

from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(DefaultJSONProvider):
    """flask's JSON provider API on orjson (falling back to flask's default for odd types)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default, option=OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        body = orjson.dumps(obj, default=self.default, option=OPTIONS) + b"\n"
        return self._app.response_class(body, mimetype=self.mimetype)


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, reading JSON bodies with orjson rather than ``json.loads``.

    The standard library accepts lone UTF-16 surrogates (``"\\ud800"``), which neither the
    database drivers nor the response encoder can take, and raises ``RecursionError`` on deep
    nesting; orjson refuses both (over 1,024 levels), so they are malformed bodies (400) like
    any other. An empty body is no body, as webargs has it; invalid UTF-8 is malformed.
    """

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            return core.missing
        body = req.get_data(cache=True)
        if not body:
            return core.missing
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as error:
            self._handle_invalid_json_error(error, req)
