"""Production packaging: docker-compose.yml, the Dockerfile it builds, and gunicorn.conf.py.

No Docker engine runs here, so the compose file is checked as data: the services, their health
checks, the start-up order, and that no secret is written into it.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_services(services):
    assert set(services) == {"postgres", "redis", "migrate", "app"}


@pytest.mark.parametrize("name", ["postgres", "redis"])
def test_backing_services_have_health_checks(services, name):
    check = services[name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert check["retries"] >= 1


def test_migrate_runs_once_after_postgres_is_healthy(services):
    migrate = services["migrate"]
    assert migrate["command"] == ["flask", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_app_waits_for_healthy_backends_and_completed_migration(services):
    app = services["app"]
    assert app["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert app["command"][0] == "gunicorn"
    assert "healthcheck" in app


@pytest.mark.parametrize("name", ["migrate", "app"])
def test_app_environment_comes_from_outside(services, name):
    env = services[name]["environment"]
    assert env["FACETS_ENV"] == "production"
    assert env["JWT_SECRET"] == "${JWT_SECRET:?set JWT_SECRET}"
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379/")


def test_no_secret_is_written_into_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text()
    for key in ("JWT_SECRET", "POSTGRES_PASSWORD"):
        for value in re.findall(rf"^\s*{key}:\s*(\S+)", text, re.M):
            assert value.startswith("${"), f"{key} is set to a literal in docker-compose.yml"


def test_dockerfile_copies_every_packaged_module():
    dockerfile = (ROOT / "Dockerfile").read_text()
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    top_level = {p.split(".")[0] for p in setuptools["packages"]}
    for package in top_level:
        assert re.search(rf"^COPY {package}/ {package}/$", dockerfile, re.M), package
    for module in setuptools["py-modules"]:
        assert re.search(rf"^COPY .*\b{module}\.py\b", dockerfile, re.M), module
    assert "gunicorn.conf.py" in dockerfile


@pytest.fixture(scope="module")
def gunicorn_conf() -> dict:
    """gunicorn.conf.py's settings; the environment it may change is put back afterwards."""
    saved = dict(os.environ)
    try:
        conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
        conf["on_exit"](None)
        return conf
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_gunicorn_settings(gunicorn_conf):
    assert gunicorn_conf["wsgi_app"] == "app:create_app()"
    assert gunicorn_conf["worker_class"] == "gevent"  # waiting reads must not hold a slot
    assert gunicorn_conf["worker_connections"] >= 1000
    assert gunicorn_conf["keepalive"] > 0
    assert gunicorn_conf["graceful_timeout"] > 0
    assert gunicorn_conf["bind"]


def test_gunicorn_access_log_lines_are_json(gunicorn_conf):
    atoms = {
        "t": "[29/Nov/2026:06:00:00 +0000]",
        "h": "127.0.0.1",
        "m": "GET",
        "U": "/api/v1/org/acme/sandboxes/facets",
        "q": 'state="running"\\x',
        "s": "200",
        "{x-request-id}o": "abc",
        "a": 'agent "quoted" \\ back\tslash',
        "M": 3,
    }
    line = gunicorn_conf["access_log_format"] % gunicorn_conf["JsonSafeAtoms"](atoms)
    record = json.loads(line)
    assert record["query"] == atoms["q"]
    assert record["user_agent"] == atoms["a"]
    assert record["status"] == "200"
    assert record["bytes"] == "-"  # a missing atom
