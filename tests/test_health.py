"""/healthz and /readyz: unauthenticated probes, 200 degraded without Redis, 503 without SQL."""

from __future__ import annotations

import logging

import pytest
from conftest import redis_down

from facets import create_app
from facets.extensions import state


def test_healthz_answers_without_credentials(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_checks_the_database_and_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "redis": "ok"}


def test_readyz_without_redis_is_degraded_but_ready(app, client):
    with redis_down(app):
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "degraded", "database": "ok", "redis": "unavailable"}


BROKEN_DATABASES = {
    "fast": "sqlite:////nonexistent-directory/facets.sqlite3",
    "real": "postgresql://postgres@127.0.0.1:1/facets",
}


def test_readyz_without_the_database_is_503(app_config, leg, caplog):
    app = create_app({**app_config, "DATABASE_URL": BROKEN_DATABASES[leg]})
    with caplog.at_level(logging.WARNING, logger="facets.ops.health"):
        response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "database": "unavailable", "redis": "ok"}
    assert "database unavailable (OperationalError)" in caplog.text
    # The process itself is alive.
    assert app.test_client().get("/healthz").status_code == 200
    with app.app_context():
        state().db.dispose()


def test_probes_are_not_in_the_api_document(client):
    paths = client.get("/openapi.json").json["paths"]
    assert not {"/healthz", "/readyz", "/metrics"} & set(paths)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_logged_at_debug(app_config, path, caplog):
    app = create_app({**app_config, "LOG_LEVEL": "DEBUG"})
    with caplog.at_level(logging.DEBUG, logger="facets.request"):
        app.test_client().get(path)
        app.test_client().get("/no-such-page")
    levels = {r.path: r.levelno for r in caplog.records if r.name == "facets.request"}
    assert levels == {path: logging.DEBUG, "/no-such-page": logging.INFO}
    with app.app_context():
        state().db.dispose()
