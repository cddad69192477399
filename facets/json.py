"""The app's JSON provider: orjson, compact, keys sorted, one trailing newline.

Every JSON body the app sends (marshmallow dumps, error envelopes, the facets' directly
built bodies) goes through it, so two equal objects always produce identical bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from flask.json.provider import DefaultJSONProvider

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
