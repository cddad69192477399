"""No traps for a new user: what the quick start's first steps meet says what is true.

The embedded cache is refused by the cache CLI, the JWT_SECRET warning shows where the
server starts (not for every command), a repeated ``project_id`` is refused, an org slug with
capitals is told slugs are lowercase, and ``flask tokens revoke`` takes the whole key too.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from conftest import JWT_SECRET, ROOT, gunicorn_running

from facets import create_app

FACETS = "/api/v1/org/acme/sandboxes/facets"
SANDBOXES = "/api/v1/org/acme/sandboxes"


@pytest.fixture
def owner(world):
    world.org("acme")
    return world.caller("acme", "owner")


# --- repeated project_id ----------------------------------------------------------------------


@pytest.mark.parametrize("path", [FACETS, SANDBOXES])
@pytest.mark.parametrize("form", ["repeated", "comma"])
def test_more_than_one_project_id_is_422_saying_only_one(client, owner, path, form):
    a, b = uuid.uuid4(), uuid.uuid4()
    query = f"project_id={a}&project_id={b}" if form == "repeated" else f"project_id={a},{b}"
    response = client.get(f"{path}?{query}", headers=owner.headers)
    assert response.status_code == 422, response.json
    assert response.json["type"] == "validation_error"
    (item,) = response.json["errors"]
    assert item["loc"] == ["query", "project_id"]
    assert "Only one project may be given" in item["msg"]
    assert "Only one project may be given" in response.json["detail"]


def test_one_project_id_still_filters(client, world, owner):
    web = world.project("acme", "web")
    world.sandboxes("acme", web, "running", 2)
    world.sandboxes("acme", None, "running", 1)
    response = client.get(f"{FACETS}?project_id={web}", headers=owner.headers)
    assert response.status_code == 200
    assert response.json["states"] == [{"value": "running", "count": 2}]


# --- org slugs are lowercase ---------------------------------------------------------------------


def test_an_org_slug_with_capitals_is_told_slugs_are_lowercase(client, owner):
    response = client.get("/api/v1/org/ACME/sandboxes/facets", headers=owner.headers)
    assert response.status_code == 404
    assert response.json["detail"] == (
        "Organization 'ACME' not found. Org slugs are lowercase: 'acme'?"
    )
    lower = client.get("/api/v1/org/nope/sandboxes/facets", headers=owner.headers)
    assert lower.json["detail"] == "Organization 'nope' not found."


# --- tokens revoke -------------------------------------------------------------------------------


def test_tokens_revoke_takes_the_whole_key(client, runner, world, owner):
    result = runner.invoke(args=["tokens", "revoke", owner.key])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"revoked {owner.key[:11]}"
    assert owner.key[11:] not in result.output  # the secret part is never echoed
    response = client.get(FACETS, headers=owner.headers)
    assert (response.status_code, response.json["type"]) == (401, "authentication_error")


# --- exit codes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, status",
    [
        (["orgs", "create", "acme", "--frobnicate"], 2),  # click's usage error
        (["members", "add", "acme", "x@example.com", "--role", "king"], 2),
        (["orgs", "create", "Bad Slug"], 1),  # a caller mistake the command finds
    ],
)
def test_exit_codes_are_those_the_readme_gives(runner, args, status):
    result = runner.invoke(args=args)
    assert result.exit_code == status, result.output
    assert len(result.stderr.splitlines()) == 1


# --- the embedded cache --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["verify", "rebuild"])
def test_cache_commands_refuse_the_embedded_redis(tmp_path, sqlite_template, command):
    """Outside a test app the embedded Redis is the command's own, not the server's: saying
    "cache agrees" or "1 differed" about it would be a lie."""
    database = tmp_path / "facets.sqlite3"
    shutil.copy(sqlite_template, database)
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{database}",
            "REDIS_URL": "fakeredis://",
            "JWT_SECRET": JWT_SECRET,
        }
    )
    result = app.test_cli_runner().invoke(args=["facets", command])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "embedded fakeredis://" in line and "cannot see" in line
    assert result.stdout == ""


# --- the JWT_SECRET warning ----------------------------------------------------------------------

WARNING = "JWT_SECRET is not set"


def flask(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"JWT_SECRET", "FACETS_ENV"}}
    env |= {"FLASK_APP": "app", "DATABASE_URL": f"sqlite:///{tmp_path / 'f.sqlite3'}"}
    return subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("args", [["--help"], ["db", "upgrade"], ["orgs", "--help"]])
def test_commands_do_not_print_the_jwt_secret_warning(tmp_path, args):
    result = flask(*args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert WARNING not in result.stderr + result.stdout


def test_the_server_logs_the_jwt_secret_warning_once(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("JWT_SECRET", raising=False)
    with caplog.at_level(logging.WARNING, logger="facets"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'f.sqlite3'}", "TESTING": True})
    assert [r.getMessage() for r in caplog.records].count(
        "JWT_SECRET is not set: using a random secret; JWTs die with this process"
    ) == 1


def test_gunicorn_logs_the_jwt_secret_warning_once_for_all_its_workers(tmp_path, monkeypatch):
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("FACETS_ENV", raising=False)
    log = tmp_path / "gunicorn.log"
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'f.sqlite3'}", "GUNICORN_WORKERS": "3"}
    with gunicorn_running(env, log) as base:
        urllib.request.urlopen(f"{base}/healthz", timeout=5).read()
        # each worker builds its app as it boots: give the other two the time to (not) say it
        deadline = time.monotonic() + 5
        while log.read_text().count(WARNING) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert log.read_text().count(WARNING) == 1
