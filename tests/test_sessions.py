"""JWT lifetimes and session revocation: ``flask users revoke-sessions`` ends a user's JWTs
(and with ``--api-keys`` their keys) on the next request, read in the access statement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_jwt, statements
from test_auth import assert_401, bearer

from facets.extensions import state
from models.services import accounts

FACETS = "/api/v1/org/acme/sandboxes/facets"
SANDBOXES = "/api/v1/org/acme/sandboxes"
PROJECTS = "/api/v1/org/acme/projects"


@pytest.fixture
def member(world):
    """A member of acme, which has one running sandbox."""
    world.org("acme")
    world.sandboxes("acme", None, "running", 1)
    return world.caller("acme", "member")


def assert_token_error(response) -> None:
    assert_401(response, "token_error")


def test_jwt_within_its_max_age_is_accepted(client, member):
    response = client.get(FACETS, headers=bearer(make_jwt(member.user_id, expires_in=86400)))
    assert response.status_code == 200


def test_jwt_max_age_is_configurable(app, client, member):
    app.config["JWT_MAX_AGE_S"] = 60
    assert_token_error(client.get(FACETS, headers=bearer(make_jwt(member.user_id))))
    token = make_jwt(member.user_id, expires_in=60)
    assert client.get(FACETS, headers=bearer(token)).status_code == 200


def every_call(client, headers) -> list:
    """A read, a list, a project list and a write: each checks the credential."""
    return [
        client.get(FACETS, headers=headers),
        client.get(SANDBOXES, headers=headers),
        client.get(PROJECTS, headers=headers),
        client.post(SANDBOXES, json={}, headers=headers),
    ]


def test_revoke_sessions_ends_older_jwts_and_keeps_api_keys(client, runner, member):
    old = bearer(make_jwt(member.user_id))
    assert all(r.status_code in (200, 201) for r in every_call(client, old))
    result = runner.invoke(args=["users", "revoke-sessions", member.email])
    assert result.exit_code == 0, result.output
    assert member.email in result.stdout.splitlines()[-1]
    for response in every_call(client, old):
        assert_token_error(response)
    assert all(r.status_code in (200, 201) for r in every_call(client, member.headers))


def test_a_jwt_issued_after_the_revocation_works(app, client, member):
    with app.app_context(), state().unit_of_work() as uow:
        at = datetime.now(UTC) - timedelta(seconds=30)
        accounts.revoke_sessions(uow, email=member.email, at=at)
    before = make_jwt(member.user_id, iat=at - timedelta(seconds=1))
    assert_token_error(client.get(FACETS, headers=bearer(before)))
    after = bearer(make_jwt(member.user_id))
    assert all(r.status_code in (200, 201) for r in every_call(client, after))


def test_revoke_sessions_with_api_keys_ends_the_keys_too(client, runner, world, member):
    other = world.caller("acme", "member")
    result = runner.invoke(args=["users", "revoke-sessions", member.email, "--api-keys"])
    assert result.exit_code == 0, result.output
    assert "1 API keys" in result.stdout
    for response in every_call(client, member.headers):
        assert response.status_code == 401
        assert response.json["type"] == "authentication_error"
    assert client.get(FACETS, headers=other.headers).status_code == 200


def test_revoke_sessions_of_an_unknown_user_is_one_line(runner):
    result = runner.invoke(args=["users", "revoke-sessions", "nobody@example.com"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: No user with email 'nobody@example.com'."]


def test_the_revocation_costs_no_extra_statement(app, client, member):
    """A JWT's read runs the one access statement it ran before revocation existed."""
    headers = bearer(make_jwt(member.user_id))
    client.get(FACETS, headers=headers)  # warm
    with statements(app) as seen:
        assert client.get(SANDBOXES, headers=headers).status_code == 200
    with app.app_context(), state().unit_of_work() as uow:
        accounts.revoke_sessions(uow, email=member.email)
    with statements(app) as after:
        assert_token_error(client.get(SANDBOXES, headers=headers))
    assert len(after) <= len(seen)
    assert any("sessions_revoked_at" in sql for sql in after)
