"""Production server settings: ``gunicorn`` (or ``gunicorn -c gunicorn.conf.py``) in the project.

gevent workers with HTTP keep-alive, sized from the environment, one JSON object per line on
the access log, and the API's error envelope for requests gunicorn refuses itself. The app
itself is configured by its own variables (README, Configuration).
"""

import json
import multiprocessing
import os
import shutil
import tempfile

from gunicorn.glogging import Logger, SafeAtoms

wsgi_app = "app:create_app()"

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# gevent: a request is a greenlet, so the waiting reads (``?wait=``, up to a minute each) cost
# memory, not one of a few request slots. The worker patches the standard library before it
# loads the app; redis-py then waits cooperatively on its sockets and psycopg (>= 3.1.14) on
# the database's. ``GUNICORN_WORKER_CLASS=gthread`` gives the thread workers back (README,
# Worker model, compares them).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    # A write waiting for its org's place (facets.edge.org_writes) then holds a greenlet, not a
    # thread nor a database connection: queue it for a while rather than refuse it at once.
    os.environ.setdefault("ORG_WRITE_WAIT_MS", "2000")
# The embedded fakeredis lives inside one process, so several workers would each keep their
# own counter cache; with a real REDIS_URL the workers share one. Then the CPU goes to
# processes (two per core): a worker runs Python on one core at a time, whatever its model.
# Under gthread, on 2 cores the 8 slots of 4 workers x 2 threads served 9-18% more warm facets
# req/s than those of 2 x 4 under wrk (README, Benchmarks).
_embedded_redis = os.environ.get("REDIS_URL", "fakeredis://").startswith("fakeredis://")
_default_workers = 1 if _embedded_redis else 2 * multiprocessing.cpu_count()
workers = int(os.environ.get("GUNICORN_WORKERS", _default_workers))
threads = int(os.environ.get("GUNICORN_THREADS", "4" if _embedded_redis else "2"))  # gthread
# gevent: the most connections a worker serves at once (waiting reads included).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "2000"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10

# Prometheus multiprocess mode: every worker writes its metrics to files in this directory and
# /metrics sums them. prometheus-client reads the variable when it is first imported, so it is
# set here, in the master, before any worker imports the app. With several workers and no
# directory given, a temporary one is made (and removed on exit).
prometheus_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_prometheus_dir_is_ours = False
if not prometheus_dir and workers > 1:
    prometheus_dir = tempfile.mkdtemp(prefix="facets-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prometheus_dir
    _prometheus_dir_is_ours = True


def on_starting(server):
    """Say once, here in the master, what a development default costs (the workers then do
    not, each); start with no metric files: a previous run's would be summed into this one's."""
    from facets import config

    if not os.environ.get("JWT_SECRET") and os.environ.get("FACETS_ENV") != "production":
        server.log.warning(config.RANDOM_JWT_SECRET_WARNING)
    os.environ[config.STARTUP_WARNED_ENV] = "1"
    if prometheus_dir:
        os.makedirs(prometheus_dir, exist_ok=True)
        for name in os.listdir(prometheus_dir):
            if name.endswith(".db"):
                os.remove(os.path.join(prometheus_dir, name))


def post_worker_init(worker):
    """Requests gunicorn refuses itself get the API's error envelope, not an HTML page.

    Here, once the worker has loaded the app, rather than in ``post_fork``: the gevent worker
    patches the standard library between the two, and the app's modules (redis-py, psycopg)
    must be imported after that to wait cooperatively.
    """
    from facets.edge.server_errors import install

    install()


def child_exit(server, worker):
    """Let prometheus-client drop a dead worker's live-gauge files."""
    if prometheus_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, prometheus_dir)


def on_exit(server):
    if _prometheus_dir_is_ours:
        shutil.rmtree(prometheus_dir, ignore_errors=True)


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
