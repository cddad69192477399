"""Admin commands start light: what ``flask --help`` and ``flask facets verify --org X`` import.

Each runs as a real ``flask`` process in the project directory; the test asserts which heavy
modules it did NOT import, that a command's set-up ran with the cyclic GC paused and left
frozen (the time is only reported: a wall-clock or CPU bound would fail on a busy machine),
and that the commands that serve or inspect the app still get all of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import admin_command
from bench.cpu import children_s
from facets.cli.commands import ROLES
from models import Role, migrate

ROOT = Path(__file__).resolve().parents[1]
FLASK = str(Path(sys.executable).with_name("flask"))
HTTP_ROOMS = ("facets.api", "facets.edge", "facets.ops.observability", "facets.ops.health")
LIBRARIES = ("flask_smorest", "marshmallow", "webargs", "limits", "alembic")
DATA = ("sqlalchemy", "psycopg", "redis", "prometheus_client", "models", "facets.extensions")

# Runs flask's CLI as the ``flask`` script does, then prints the modules it imported.
PROBE = """
import gc, json, sys
from flask.cli import main
sys.argv = ["flask", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
report = {"modules": sorted(sys.modules), "code": code, "frozen": gc.get_freeze_count(),
          "gc_enabled": gc.isenabled()}
print(json.dumps(report), file=sys.stderr)
"""


def flask(tmp_path, *args: str, redis_url: str = "fakeredis://") -> tuple[str, set[str]]:
    """Run ``flask ARGS``; returns its stdout and the modules it imported."""
    out, report = flask_report(tmp_path, *args, redis_url=redis_url)
    return out, set(report["modules"])


def flask_report(tmp_path, *args: str, redis_url: str = "fakeredis://") -> tuple[str, dict]:
    """Run ``flask ARGS``; returns its stdout and the probe's report."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "TEST_"))},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'facets.sqlite3'}",
        "REDIS_URL": redis_url,
        "JWT_SECRET": "startup-test-secret-that-is-long-enough",
    }
    before = children_s()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    cpu = children_s() - before
    print(f"flask {' '.join(args)}: {cpu:.2f}s process CPU (user+sys)")
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stdout + done.stderr
    return done.stdout, report


def imported(modules: set[str], names) -> list[str]:
    return [name for name in names if name in modules]


def test_flask_help_imports_neither_the_http_rooms_nor_the_data_layers(tmp_path):
    out, modules = flask(tmp_path, "--help")
    assert "facets" in out and "orgs" in out
    assert imported(modules, HTTP_ROOMS + LIBRARIES + DATA) == []


def test_verify_one_org_imports_no_http_room_nor_the_api_libraries(tmp_path, redis_server):
    # a private redis-server: verify refuses the embedded cache, which it could not see
    migrate.upgrade(f"sqlite:///{tmp_path / 'facets.sqlite3'}")
    flask(tmp_path, "orgs", "create", "acme")
    out, modules = flask(tmp_path, "facets", "verify", "--org", "acme", redis_url=redis_server.url)
    assert out.splitlines()[-1] == "cache agrees with SQL for 1 orgs"
    assert imported(modules, HTTP_ROOMS + LIBRARIES) == []


def test_a_command_sets_up_with_the_collector_paused_and_leaves_what_it_made_frozen(tmp_path):
    migrate.upgrade(f"sqlite:///{tmp_path / 'facets.sqlite3'}")
    _, report = flask_report(tmp_path, "orgs", "create", "acme")
    assert report["frozen"] > 100_000  # the libraries' objects: later collections skip them
    assert report["gc_enabled"]  # paused for the set-up only


def test_the_command_list_freezes_nothing(tmp_path):
    _, report = flask_report(tmp_path, "--help")
    assert report["frozen"] == 0 and report["gc_enabled"]


def test_commands_that_serve_or_inspect_the_app_get_all_of_it(tmp_path):
    out, modules = flask(tmp_path, "routes")
    assert "/api/v1/org/<org>/sandboxes/facets" in out.replace("<string:", "<")
    assert imported(modules, HTTP_ROOMS) == list(HTTP_ROOMS)


@pytest.mark.parametrize(
    ("argv", "admin"),
    [
        (["/venv/bin/flask"], True),
        (["/venv/bin/flask", "--help"], True),
        (["flask", "facets", "verify", "--org", "run"], True),
        (["flask", "-A", "app", "--debug", "orgs", "create", "x"], True),
        (["flask", "--env-file", "demo", "run"], False),
        (["flask", "run"], False),
        (["flask", "routes"], False),
        (["flask", "shell"], False),
        (["/usr/lib/python3/site-packages/flask/__main__.py", "db", "upgrade"], True),
        (["gunicorn"], False),
        (["-c"], False),
    ],
)
def test_which_processes_get_the_admin_only_app(argv, admin):
    assert admin_command(argv) is admin


def test_the_role_choices_are_the_models_roles():
    assert ROLES == tuple(r.value for r in Role)
