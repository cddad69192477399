"""The admin CLI through the runner: results on the last stdout line, one-line errors."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import JWT_SECRET
from sqlalchemy import select, text

from facets import create_app
from facets.extensions import state
from models import ApiKey, Membership, Org, User

FACETS = "/api/v1/org/acme/sandboxes/facets"


def ok(runner, *args: str) -> str:
    """Run a command that must succeed; its last line of stdout."""
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines, "no output"
    return lines[-1]


def fails(runner, *args: str) -> str:
    """Run a command that must fail: non-zero exit, exactly one line on stderr."""
    result = runner.invoke(args=list(args))
    assert result.exit_code != 0, result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].strip()
    return lines[0]


def db_row(app, query):
    with app.app_context(), state().db.read_session() as session:
        return session.execute(query).one_or_none()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_orgs_create_prints_the_id(app, runner):
    org_id = uuid.UUID(ok(runner, "orgs", "create", "acme", "--name", "Acme Inc."))
    row = db_row(app, select(Org.slug, Org.name).where(Org.id == org_id))
    assert tuple(row) == ("acme", "Acme Inc.")


def test_orgs_create_name_defaults_to_the_slug(app, runner):
    org_id = uuid.UUID(ok(runner, "orgs", "create", "globex"))
    assert db_row(app, select(Org.name).where(Org.id == org_id))[0] == "globex"


def test_users_create_prints_the_id(app, runner):
    user_id = uuid.UUID(ok(runner, "users", "create", "ada@example.com"))
    assert db_row(app, select(User.email).where(User.id == user_id))[0] == "ada@example.com"


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_members_add(app, runner, role):
    org_id = uuid.UUID(ok(runner, "orgs", "create", "acme"))
    user_id = uuid.UUID(ok(runner, "users", "create", "ada@example.com"))
    last = ok(runner, "members", "add", "acme", "ada@example.com", "--role", role)
    assert "ada@example.com" in last and role in last
    query = select(Membership.role).where(
        Membership.org_id == org_id, Membership.user_id == user_id
    )
    row = db_row(app, query)
    assert row[0] == role


def test_members_add_changes_an_existing_role(app, client, runner, world):
    world.org("acme")
    web = world.project("acme", "web", "Web")
    world.sandboxes("acme", web, "running", 2)
    member = world.caller("acme", "member")
    assert client.get(FACETS, headers=member.headers).json["states"] == []
    ok(runner, "members", "add", "acme", member.email.upper(), "--role", "admin")
    assert client.get(FACETS, headers=member.headers).json["states"] == [
        {"value": "running", "count": 2}
    ]


def test_cli_setup_end_to_end(client, runner):
    """An org, a user, a membership and a key made by the CLI are enough to call the API."""
    ok(runner, "orgs", "create", "acme")
    ok(runner, "users", "create", "ada@example.com")
    ok(runner, "members", "add", "acme", "ada@example.com", "--role", "member")
    key = ok(runner, "tokens", "create", "ada@example.com")
    assert key.startswith("sk_")
    response = client.get(FACETS, headers=bearer(key))
    assert response.status_code == 200
    assert response.json == {"projects": [], "states": []}


def test_tokens_create_prints_a_new_key_each_time(app, runner):
    ok(runner, "users", "create", "ada@example.com")
    keys = {ok(runner, "tokens", "create", "ada@example.com") for _ in range(3)}
    assert len(keys) == 3
    row = db_row(app, select(ApiKey.expires_at).where(ApiKey.prefix == min(keys)[:11]))
    assert row is not None and row[0] is None


def test_tokens_create_with_expiry(app, runner):
    ok(runner, "users", "create", "ada@example.com")
    before = datetime.now(UTC)
    key = ok(runner, "tokens", "create", "ada@example.com", "--expires-in", "3600")
    after = datetime.now(UTC)
    (expires_at,) = db_row(app, select(ApiKey.expires_at).where(ApiKey.prefix == key[:11]))
    assert before + timedelta(seconds=3600) <= expires_at <= after + timedelta(seconds=3601)


def test_token_expires_after_its_lifetime(client, runner, world):
    world.org("acme")
    member = world.caller("acme", "member")
    key = ok(runner, "tokens", "create", member.email, "--expires-in", "1")
    assert client.get(FACETS, headers=bearer(key)).status_code == 200
    time.sleep(1.1)
    response = client.get(FACETS, headers=bearer(key))
    assert (response.status_code, response.json["type"]) == (401, "expired_token_error")


def test_tokens_revoke(client, runner, world):
    world.org("acme")
    member = world.caller("acme", "member")
    prefix = member.key[:11]
    last = ok(runner, "tokens", "revoke", prefix)
    assert prefix in last
    response = client.get(FACETS, headers=member.headers)
    assert (response.status_code, response.json["type"]) == (401, "authentication_error")
    ok(runner, "tokens", "revoke", prefix)  # revoking twice is harmless


def test_db_upgrade_is_idempotent_and_reaches_head(app, runner):
    from alembic.script import ScriptDirectory

    from models.migrate import alembic_config

    assert "head" in ok(runner, "db", "upgrade")
    assert "head" in ok(runner, "db", "upgrade")
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    with app.app_context(), state().db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["orgs", "create", "Bad Slug"], id="org-bad-slug"),
        pytest.param(["orgs", "create", "-leading-dash"], id="org-slug-option-like"),
        pytest.param(["orgs", "create", "acme"], id="org-duplicate"),
        pytest.param(["orgs", "create"], id="org-missing-slug"),
        pytest.param(["users", "create", "not-an-email"], id="user-bad-email"),
        pytest.param(["users", "create", "ADA@example.com"], id="user-duplicate-any-case"),
        pytest.param(
            ["members", "add", "nope", "ada@example.com", "--role", "member"],
            id="member-unknown-org",
        ),
        pytest.param(
            ["members", "add", "acme", "bob@example.com", "--role", "member"],
            id="member-unknown-user",
        ),
        pytest.param(
            ["members", "add", "acme", "ada@example.com", "--role", "king"], id="member-bad-role"
        ),
        pytest.param(["members", "add", "acme", "ada@example.com"], id="member-missing-role"),
        pytest.param(["tokens", "create", "bob@example.com"], id="token-unknown-user"),
        pytest.param(
            ["tokens", "create", "ada@example.com", "--expires-in", "0"], id="token-zero-lifetime"
        ),
        pytest.param(
            ["tokens", "create", "ada@example.com", "--expires-in", "soon"], id="token-bad-lifetime"
        ),
        pytest.param(
            ["tokens", "create", "ada@example.com", "--expires-in", "999999999999"],
            id="token-lifetime-past-year-9999",
        ),
        pytest.param(["tokens", "revoke", "sk_00000000"], id="revoke-unknown-prefix"),
        pytest.param(["orgs", "create", "globex", "--name", "n" * 201], id="org-name-too-long"),
        pytest.param(["users", "create", "a" * 320 + "@x.io"], id="user-email-too-long"),
        pytest.param(["db", "upgrade", "nonsense"], id="db-upgrade-unknown-revision"),
        pytest.param(["db", "downgrade", "nonsense"], id="db-downgrade-unknown-revision"),
        pytest.param(["orgs", "frobnicate"], id="unknown-command"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_on_stderr(runner, args):
    ok(runner, "orgs", "create", "acme")
    ok(runner, "users", "create", "ada@example.com")
    fails(runner, *args)


def test_a_failed_command_changes_nothing(app, runner):
    ok(runner, "orgs", "create", "acme")
    fails(runner, "orgs", "create", "acme", "--name", "Second")
    assert db_row(app, select(Org.name).where(Org.slug == "acme"))[0] == "acme"


@pytest.mark.parametrize(
    "args",
    [
        ["orgs", "create", "acme"],
        ["tokens", "create", "ada@example.com"],
        ["facets", "verify"],
        ["facets", "rebuild"],
        ["demo"],
    ],
    ids=lambda args: "-".join(args),
)
@pytest.mark.parametrize(
    "database_url, says",
    [
        (
            "postgresql://postgres@127.0.0.1:1/nowhere",
            "Error: The database is unreachable: OperationalError.",
        ),
        (  # an unescaped @ in the password: the client's error would quote 'Secret99@...'
            "postgresql://u:hunter2@Secret99@127.0.0.1:1/nowhere",
            "Error: The database is unreachable: OperationalError.",
        ),
        (
            "sqlite:////nonexistent-dir/facets.sqlite3",
            "Error: Database error (OperationalError): unable to open database file",
        ),
    ],
    ids=["postgres-refused", "postgres-password-in-host", "sqlite-unopenable"],
)
def test_an_unreachable_database_is_one_line_not_a_traceback(args, database_url, says):
    assert fails(_app(database_url).test_cli_runner(), *args) == says


def test_a_database_before_its_migrations_says_what_is_missing(tmp_path):
    """The quick start's likely slip: a command before ``flask db upgrade``."""
    line = fails(_app(f"sqlite:///{tmp_path / 'empty.sqlite3'}").test_cli_runner(), "demo")
    assert line == "Error: Database error (OperationalError): no such table: orgs"


def _app(database_url: str):
    return create_app(
        {"TESTING": True, "DATABASE_URL": database_url, "REDIS_URL": "fakeredis://"}
        | {"JWT_SECRET": JWT_SECRET, "LOG_LEVEL": "WARNING"}
    )


@pytest.mark.leg("real")
def test_a_server_error_is_named_with_its_message_on_postgres(app_config):
    url = app_config["DATABASE_URL"]
    url += ("&" if "?" in url else "?") + "options=-c%20search_path%3Dnowhere"
    line = fails(_app(url).test_cli_runner(), "demo")
    assert line == 'Error: Database error (UndefinedTable): relation "orgs" does not exist'
