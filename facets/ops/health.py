"""Probes for the orchestrator: ``/healthz`` (the process answers) and ``/readyz`` (it can serve).

Both are unauthenticated, never rate limited, left out of the OpenAPI document (they are not
part of the API contract) and logged at DEBUG. ``/readyz`` runs ``SELECT 1``: without the
database nothing works, so that is 503 ``unavailable``. Without Redis the facets still come
from SQL, so that is 200 ``degraded``. The bodies are plain status objects, not the error
envelope, because they are not API errors.
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from flask import Blueprint, Flask

from facets.extensions import state
from facets.redis_cluster import LazyCluster, cluster_ready

log = logging.getLogger(__name__)

probes = Blueprint("health", __name__)


@probes.get("/healthz")
def healthz():
    """The process is up; checks nothing else."""
    return {"status": "ok"}


@probes.get("/readyz")
def readyz():
    """Whether this instance can serve: the database must answer; Redis may be missing."""
    database = _check("database", _select_one)
    redis = _check("redis", _redis_serves)
    if database != "ok":
        return {"status": "unavailable", "database": database, "redis": redis}, 503
    status = "ok" if redis == "ok" else "degraded"
    return {"status": status, "database": database, "redis": redis}


def _redis_serves() -> None:
    """PING one Redis; a cluster must also serve every slot (one node's ``CLUSTER INFO``)."""
    client = state().redis
    if isinstance(client, LazyCluster):
        cluster_ready(client)
    else:
        client.ping()


def _select_one() -> None:
    with state().db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _check(name: str, probe) -> str:
    try:
        probe()
    except Exception as error:  # any failure means "not usable now"; the type says enough
        log.warning("readiness: %s unavailable (%s)", name, type(error).__name__)
        return "unavailable"
    return "ok"


def init_app(app: Flask) -> None:
    app.register_blueprint(probes)
