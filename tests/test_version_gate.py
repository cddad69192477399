"""426 upgrade_required_error for clients older than MIN_CLIENT_VERSION, on /api/ only."""

from __future__ import annotations

import pytest
from conftest import World

from facets import create_app
from facets.extensions import state

FACETS = "/api/v1/org/acme/sandboxes/facets"


@pytest.fixture
def gated(app_config):
    """The app with MIN_CLIENT_VERSION=2.4.0, an org and its owner."""
    app = create_app({**app_config, "MIN_CLIENT_VERSION": "2.4.0"})
    world = World(app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    yield app.test_client(), owner.headers
    with app.app_context():
        state().db.dispose()


@pytest.mark.parametrize("version", ["2.3.9", "1.0", "2.4.0rc1", "0.9.99"])
def test_an_older_client_gets_426_naming_the_minimum(gated, version):
    client, headers = gated
    response = client.get(FACETS, headers={**headers, "X-Client-Version": version})
    assert response.status_code == 426
    assert response.json["code"] == 426
    assert response.json["type"] == "upgrade_required_error"
    assert "2.4.0" in response.json["detail"]


@pytest.mark.parametrize("version", ["2.4.0", "2.4", "2.10.0", "3.0.0", " 2.4.1 ", ""])
def test_a_current_client_or_none_passes(gated, version):
    client, headers = gated
    response = client.get(FACETS, headers={**headers, "X-Client-Version": version})
    assert response.status_code == 200
    assert client.get(FACETS, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "banana; drop",
        "1" * 4301,  # past the digits Python converts to an int (packaging raises ValueError)
        "2." + "1" * 4301,
    ],
    ids=["words", "4301-digits", "2.4301-digits"],
)
def test_a_header_that_is_no_version_is_400(gated, header):
    client, headers = gated
    response = client.get(FACETS, headers={**headers, "X-Client-Version": header})
    assert response.status_code == 400
    assert response.json["type"] == "invalid_error"
    assert "banana" not in response.json["detail"]


def test_the_gate_comes_before_authentication_and_covers_mutations(gated):
    client, _ = gated
    old = {"X-Client-Version": "2.0.0"}
    assert client.get(FACETS, headers=old).status_code == 426
    assert client.post("/api/v1/org/acme/sandboxes", json={}, headers=old).status_code == 426


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs"])
def test_only_api_routes_are_gated(gated, path):
    client, _ = gated
    assert client.get(path, headers={"X-Client-Version": "0.1"}).status_code == 200


def test_a_preflight_is_not_gated(gated):
    client, _ = gated
    response = client.options(FACETS, headers={"X-Client-Version": "0.1"})
    assert response.status_code == 200


def test_without_a_minimum_nothing_is_checked(client):
    response = client.get(FACETS, headers={"X-Client-Version": "not a version"})
    assert response.status_code == 401


def test_a_minimum_that_is_no_version_stops_the_app(app_config):
    with pytest.raises(RuntimeError, match="MIN_CLIENT_VERSION"):
        create_app({**app_config, "MIN_CLIENT_VERSION": "latest"})
