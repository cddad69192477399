"""Production packaging: docker-compose.yml, the Dockerfiles it builds, and gunicorn.conf.py.

No Docker engine runs here, so the compose file is checked as data: the services, their health
checks, the start-up order, that only the proxy is published, that the proxy's config gets
every placeholder of deploy/nginx.conf, and that no secret is written into it.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import require_installed

from soak.nginx import PLACEHOLDERS, TEMPLATE, render, template_placeholders, upstream_servers

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_services(services):
    assert set(services) == {"postgres", "redis", "migrate", "app", "proxy"}


def test_only_the_proxy_is_published(services):
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert services["proxy"]["ports"] == ["${FACETS_PORT:-8000}:8080"]
    assert services["app"]["expose"] == ["8000"]


def test_the_proxy_starts_after_a_healthy_app_and_checks_readyz(services):
    proxy = services["proxy"]
    assert proxy["depends_on"] == {"app": {"condition": "service_healthy"}}
    assert proxy["healthcheck"]["test"][-1] == "http://127.0.0.1:8080/readyz"
    assert proxy["build"]["dockerfile"] == "deploy/Dockerfile.proxy"


def test_the_proxy_renders_every_placeholder_of_the_nginx_template(services):
    assert template_placeholders(TEMPLATE.read_text()) == set(PLACEHOLDERS)
    env = services["proxy"]["environment"]
    # the image renders the upstream servers from FACETS_UPSTREAM, the rest as they are
    assert set(PLACEHOLDERS) - {"FACETS_UPSTREAM_SERVERS"} | {"FACETS_UPSTREAM"} <= set(env)
    assert env["FACETS_UPSTREAM"] == "app:8000"
    assert env["FACETS_PROXY_LISTEN"].endswith(":8080")
    # client_max_body_size is the app's own limit, from one variable.
    app_limit = services["app"]["environment"]["MAX_CONTENT_LENGTH"]
    assert env["MAX_CONTENT_LENGTH"] == app_limit == "${MAX_CONTENT_LENGTH:-65536}"
    dockerfile = (ROOT / "deploy" / "Dockerfile.proxy").read_text()
    (names,) = re.findall(r"envsubst '([^']*)'", dockerfile)
    assert names.split() == ["${" + name + "}" for name in PLACEHOLDERS]
    assert "COPY deploy/nginx.conf " in dockerfile


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


@pytest.mark.parametrize("upstream", [["app:8000"], ["app-1:8000", "app-2:8000"]])
def test_the_proxy_image_renders_the_template_as_the_tests_do(tmp_path, upstream):
    """The image's start command (its shell and ``envsubst``, nginx itself stubbed) writes
    byte for byte the config soak/nginx.py renders, for one upstream and for several."""
    require_installed(
        [] if shutil.which("envsubst") else ["envsubst"], "apt-get install -y gettext-base"
    )
    runtime, stubs = tmp_path / "run", tmp_path / "bin"
    stubs.mkdir()
    (stubs / "nginx").write_text("#!/bin/sh\nexit 0\n")
    (stubs / "nginx").chmod(0o755)
    dockerfile = (ROOT / "deploy" / "Dockerfile.proxy").read_text()
    (command,) = re.findall(r'^CMD \["sh", "-c", (".*")\]$', dockerfile, re.M)
    template = tmp_path / "nginx.conf.template"
    template.write_text(TEMPLATE.read_text())
    script = json.loads(command).replace("/etc/facets/nginx.conf.template", str(template))
    env = {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "FACETS_PROXY_LISTEN": "0.0.0.0:8080",
        "FACETS_UPSTREAM": " ".join(upstream),
        "MAX_CONTENT_LENGTH": "65536",
        "NGINX_RUNTIME_DIR": str(runtime),
        "host": "not-an-nginx-variable",
    }
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    rendered = (runtime / "nginx.conf").read_text()
    values = {
        "FACETS_PROXY_LISTEN": "0.0.0.0:8080",
        "FACETS_UPSTREAM_SERVERS": upstream_servers(upstream),
        "MAX_CONTENT_LENGTH": "65536",
        "NGINX_RUNTIME_DIR": str(runtime),
    }
    assert rendered == render(values)
    assert "$host" in rendered and not template_placeholders(rendered)
    assert all(f"server {address} max_fails=0;" in rendered for address in upstream)
