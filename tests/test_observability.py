"""JSON request logs without credentials, /metrics behind its token, multiprocess under gunicorn."""

from __future__ import annotations

import functools
import json
import logging
import os
import runpy
import time
import urllib.error
import urllib.request
import uuid

import pytest
from conftest import ROOT, World, gunicorn_running, make_jwt

from facets import config

FACETS = "/api/v1/org/acme/sandboxes/facets"
METRIC_NAMES = [
    "facets_http_request_duration_seconds",
    "facets_served_total",
    "facets_cache_recounts_total",
    "facets_cache_installs_total",
    "facets_cache_lease_waits_total",
    "facets_redis_errors_total",
    "facets_after_commit_hook_failures_total",
    "facets_rate_limited_total",
]


@pytest.fixture
def make_app(make_app):
    """The conftest ``make_app``, with rate limits on (test apps have them off by default)."""
    return functools.partial(make_app, RATE_LIMITS_ENABLED=True)


def request_lines(text: str) -> list[dict]:
    """The JSON request log lines in captured stderr."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "facets.request"]


def test_one_json_line_per_request_with_the_cache_path(make_app, capsys):
    app = make_app(LOG_LEVEL="INFO")
    world = World(app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    client = app.test_client()
    capsys.readouterr()
    first = client.get(FACETS, headers={**owner.headers, "X-Request-ID": "req-1"})
    client.get(FACETS, headers=owner.headers)
    client.get(FACETS, headers={**owner.headers, "If-None-Match": first.headers["ETag"]})
    lines = request_lines(capsys.readouterr().err)
    assert [line["cache_path"] for line in lines] == ["cold", "memo", "not_modified"]
    assert [line["status"] for line in lines] == [200, 200, 304]
    line = lines[0]
    assert line["request_id"] == "req-1"
    assert line["level"] == "INFO"
    assert line["org"] == "acme"
    assert line["endpoint"] == "sandboxes.get_sandbox_facets"
    assert line["route"] == "/api/v1/org/<org>/sandboxes/facets"
    assert line["method"] == "GET"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0


def test_no_credential_ever_reaches_the_log(make_app, capsys, caplog):
    """Live and forged keys and JWTs, on success and on 401, and the metrics token."""
    app = make_app(
        LOG_LEVEL="DEBUG", METRICS_TOKEN="metrics-token-5ecret", FACETS_RATE_LIMIT="3/minute"
    )
    world = World(app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    live_jwt = make_jwt(owner.user_id)
    forged_key = owner.key[:-4] + "abcd"
    credentials = {
        owner.key: 200,
        live_jwt: 200,
        forged_key: 401,
        make_jwt(owner.user_id, expires_in=-5): 401,
        make_jwt(owner.user_id, secret="another-secret-" * 4): 401,
    }
    client = app.test_client()
    capsys.readouterr()
    with caplog.at_level(logging.DEBUG):
        for credential, status in credentials.items():
            response = client.get(FACETS, headers={"Authorization": f"Bearer {credential}"})
            assert response.status_code == status
        for _ in range(4):  # into the 429 of the live key
            client.get(FACETS, headers=owner.headers)
        client.post("/api/v1/org/acme/sandboxes", json={}, headers=owner.headers)
        client.get("/metrics", headers={"Authorization": "Bearer metrics-token-5ecret"})
        client.get("/metrics", headers={"Authorization": f"Bearer {owner.key}"})
    logged = capsys.readouterr().err + caplog.text
    statuses = [line["status"] for line in request_lines(logged)]
    assert statuses.count(401) == 4 and 429 in statuses and 201 in statuses
    secrets = [*credentials, owner.key[11:], live_jwt.split(".")[2], "metrics-token-5ecret"]
    for secret in secrets:
        assert secret not in logged


def test_metrics_are_off_by_default(client):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json["type"] == "not_found_error"


def test_metrics_want_the_token(make_app):
    client = make_app(METRICS_TOKEN="s3cret-token", METRICS_PUBLIC=True).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json["type"] == "authentication_error"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"


def test_metrics_page_has_every_metric(make_app):
    app = make_app(METRICS_PUBLIC=True, FACETS_RATE_LIMIT="1/minute")
    world = World(app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    client = app.test_client()
    client.get(FACETS, headers=owner.headers)
    client.get(FACETS, headers=owner.headers)
    page = client.get("/metrics").get_data(as_text=True)
    for name in METRIC_NAMES:
        assert f"# TYPE {name}" in page
    assert 'facets_rate_limited_total{limit="facets"}' in page
    assert (
        'facets_http_request_duration_seconds_count{endpoint="sandboxes.get_sandbox_facets",'
        'status="429"}' in page
    )


class _Server:
    """What the hooks use of gunicorn's arbiter: its logger."""

    log = logging.getLogger("test.gunicorn.arbiter")


def test_gunicorn_hooks_clear_and_reap_metric_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("JWT_SECRET", "a-secret-so-the-hook-has-nothing-to-warn-about")
    monkeypatch.delenv(config.STARTUP_WARNED_ENV, raising=False)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    (tmp_path / "counter_111.db").write_bytes(b"")
    conf["on_starting"](_Server())
    assert not list(tmp_path.iterdir())
    (tmp_path / "gauge_livesum_222.db").write_bytes(b"")
    (tmp_path / "counter_222.db").write_bytes(b"")

    class Worker:
        pid = 222

    conf["child_exit"](None, Worker())
    assert [p.name for p in tmp_path.iterdir()] == ["counter_222.db"]


def test_gunicorn_master_warns_once_about_a_random_jwt_secret(monkeypatch, caplog):
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("FACETS_ENV", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv(config.STARTUP_WARNED_ENV, raising=False)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    with caplog.at_level(logging.WARNING, logger=_Server.log.name):
        conf["on_starting"](_Server())
    assert [r.getMessage() for r in caplog.records] == [config.RANDOM_JWT_SECRET_WARNING]
    assert os.environ[config.STARTUP_WARNED_ENV]


def _get(url: str, headers: dict | None = None):
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5)
    except urllib.error.HTTPError as error:
        return error


@pytest.fixture
def gunicorn_server(tmp_path):
    """Two gunicorn workers on a free port, from gunicorn.conf.py; yields (base URL, log file)."""
    log_path = tmp_path / "gunicorn.log"
    env = {
        "GUNICORN_WORKERS": "2",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'facets.sqlite3'}",
        "JWT_SECRET": "gunicorn-test-secret-long-enough-for-hs256",
        "METRICS_PUBLIC": "true",
        "LOG_LEVEL": "INFO",
    }
    with gunicorn_running(env, log_path) as base:
        yield base, log_path


def _healthz_count(page: str) -> float:
    count = 'facets_http_request_duration_seconds_count{endpoint="health.healthz",status="200"} '
    line = next(line for line in page.splitlines() if line.startswith(count))
    return float(line[len(count) :])


def test_under_gunicorn_workers_share_one_metrics_page(gunicorn_server):
    """Multiprocess mode sums the workers; the Server header names no version; logs are JSON."""
    base, log_path = gunicorn_server
    before = _healthz_count(_get(f"{base}/metrics").read().decode())
    for _ in range(8):
        response = _get(f"{base}/healthz")
        assert response.headers["Server"] == "gunicorn"
    token = make_jwt(uuid.uuid4(), secret="not-the-server-secret-" * 3)
    assert _get(f"{base}{FACETS}", {"Authorization": f"Bearer {token}"}).status == 401
    page = _get(f"{base}/metrics").read().decode()
    assert "process_cpu_seconds_total" not in page  # the multiprocess registry, not one worker's
    assert _healthz_count(page) == before + 8  # whichever worker answered each
    time.sleep(0.2)
    output = log_path.read_text()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line.get("logger") == "facets.request" and line["status"] == 401 for line in lines)
    assert token.split(".")[2] not in output
