"""Security headers on every response, and CORS for the dashboard's origins.

``Cache-Control``: a response that chose its own keeps it (the facets' ``private, no-cache``
with its ETag, the Swagger UI assets' ``max-age``); everything else is ``no-store``, since
API responses are per-caller. The ``Server`` banner is the server's business: gunicorn's says
``gunicorn`` with no version, and only the development server (``flask run``) names versions.

CORS is off unless ``CORS_ORIGINS`` lists origins; then ``/api/`` answers those origins, exposes
``ETag``, the request id and the rate-limit headers, and answers preflights (which need no
credential and are never rate limited). Credentials are bearer tokens, not cookies, so
``Access-Control-Allow-Credentials`` is not sent. With CORS on, every ``/api/`` response says
``Vary: Origin``: whether it carries the CORS headers depends on the caller's ``Origin``, so a
cache must not answer one origin (or none) with a response made for another. flask-cors says
it only for a matched origin, and only with more than one configured.
"""

from __future__ import annotations

from flask_cors import CORS

from flask import Flask, Response, request

from facets.config import split_list

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# JSON is never a document to render or frame; /docs (Swagger UI) needs its scripts, so not there.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DEFAULT_CACHE_CONTROL = "no-store"

CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-None-Match",
    "X-Client-Version",
    "X-Request-ID",
]
CORS_EXPOSE_HEADERS = [
    "ETag",
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]
CORS_METHODS = ["GET", "POST", "PATCH", "DELETE", "OPTIONS"]
CORS_MAX_AGE_S = 600


def secure(response: Response) -> Response:
    """Add the security headers and a default ``Cache-Control`` to ``response``."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Content-Security-Policy", API_CSP)
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = DEFAULT_CACHE_CONTROL
    return response


def vary_on_origin(response: Response) -> Response:
    """Add ``Origin`` to ``Vary`` of an ``/api/`` response (once, keeping other entries)."""
    if request.path.startswith("/api/"):
        response.vary.add("Origin")
    return response


def init_app(app: Flask) -> None:
    app.after_request(secure)
    origins = split_list(app.config.get("CORS_ORIGINS") or [])
    if origins:
        app.after_request(vary_on_origin)
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            methods=CORS_METHODS,
            max_age=CORS_MAX_AGE_S,
            supports_credentials=False,
            vary_header=False,  # vary_on_origin says it on every response
        )
