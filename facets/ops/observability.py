"""One JSON log line per request, the request latency histogram, and ``/metrics``.

Every ``facets.*`` logger writes JSON lines to stderr. The request line carries the request id,
org slug, endpoint, route, method, status, duration and the facets cache path; never a header,
query string or body, so credentials cannot reach the log. Health probes and metric scrapes
are logged at DEBUG, everything else at INFO.

``/metrics`` (Prometheus text format) is off (404) unless ``METRICS_TOKEN`` is set, in which
case it wants ``Authorization: Bearer <METRICS_TOKEN>``, or ``METRICS_PUBLIC`` is true (for a
private network; the token still wins when both are set). Under gunicorn with several workers
``PROMETHEUS_MULTIPROC_DIR`` must be set (gunicorn.conf.py does it), and the page then sums the
workers' files.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from flask import Blueprint, Flask, Response, abort, current_app, g, has_request_context, request

from facets.errors import envelope
from facets.ops.metrics import REQUEST_LATENCY

REQUEST_LOG = logging.getLogger("facets.request")
QUIET_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "observability.metrics"})

# LogRecord attributes that are not "extra" fields.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}

scrape = Blueprint("observability", __name__)


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message, then its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRS
        )
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (so captured output sees it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


def install_json_logging() -> None:
    """Give the ``facets`` logger one JSON handler (once per process)."""
    logger = logging.getLogger("facets")
    if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)


def request_fields(response: Response, duration_s: float) -> dict:
    """What the request log line says about a request."""
    view_args = request.view_args or {}
    return {
        "method": request.method,
        "path": request.path,
        "route": request.url_rule.rule if request.url_rule else None,
        "endpoint": request.endpoint,
        "org": view_args.get("org"),
        "status": response.status_code,
        "duration_ms": round(duration_s * 1000, 2),
        "cache_path": g.get("facets_path"),
    }


@scrape.get("/metrics")
def metrics():
    """The Prometheus metrics of this process (or of all gunicorn workers)."""
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return envelope(
                401,
                "Send 'Authorization: Bearer <METRICS_TOKEN>'.",
                headers={"WWW-Authenticate": "Bearer"},
            )
    elif not current_app.config.get("METRICS_PUBLIC"):
        abort(404)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # prometheus-client itself reads this variable when it is imported, so it is read
        # from the environment here too rather than from the app's config.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    install_json_logging()
    app.register_blueprint(scrape)

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("request_started")
        duration_s = time.perf_counter() - started if started is not None else 0.0
        endpoint = request.endpoint or "unmatched"
        REQUEST_LATENCY.labels(endpoint=endpoint, status=str(response.status_code)).observe(
            duration_s
        )
        level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
        REQUEST_LOG.log(level, "request", extra=request_fields(response, duration_s))
        return response
