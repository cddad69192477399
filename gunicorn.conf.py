"""Production server settings: ``gunicorn`` (or ``gunicorn -c gunicorn.conf.py``) in the project.

gthread workers with HTTP keep-alive, sized from the environment, and one JSON object per line
on the access log. The app itself is configured by its own variables (README, Configuration).
"""

import json
import multiprocessing
import os

from gunicorn.glogging import Logger, SafeAtoms

wsgi_app = "app:create_app()"

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gthread"
# The embedded fakeredis lives inside one process, so several workers would each keep their
# own counter cache; with a real REDIS_URL the workers share one.
_embedded_redis = os.environ.get("REDIS_URL", "fakeredis://").startswith("fakeredis://")
_default_workers = 1 if _embedded_redis else multiprocessing.cpu_count()
workers = int(os.environ.get("GUNICORN_WORKERS", _default_workers))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

access_log_format = json.dumps(
    {
        "time": "%(t)s",
        "remote_addr": "%(h)s",
        "method": "%(m)s",
        "path": "%(U)s",
        "query": "%(q)s",
        "protocol": "%(H)s",
        "status": "%(s)s",
        "bytes": "%(b)s",
        "duration_ms": "%(M)s",
        "request_id": "%({x-request-id}o)s",
        "user_agent": "%(a)s",
        "referer": "%(f)s",
    }
)


class JsonSafeAtoms(SafeAtoms):
    """Atoms escaped for a JSON string (gunicorn's own escaping covers only double quotes)."""

    def __init__(self, atoms):
        dict.__init__(self)
        for key, value in atoms.items():
            self[key] = json.dumps(value)[1:-1] if isinstance(value, str) else value


class JsonAccessLogger(Logger):
    """gunicorn's logger with access-log atoms that cannot break the JSON line."""

    atoms_wrapper_class = JsonSafeAtoms


logger_class = JsonAccessLogger
