"""Security headers and Cache-Control on every response; CORS for the configured origins."""

from __future__ import annotations

import pytest
from conftest import World

from facets import create_app
from facets.extensions import state

FACETS = "/api/v1/org/acme/sandboxes/facets"
DASHBOARD = "https://dash.example.com"


@pytest.fixture
def acme(world):
    world.org("acme")
    return world.caller("acme", "owner").headers


@pytest.fixture
def cors_app(app_config):
    app = create_app({**app_config, "CORS_ORIGINS": f"{DASHBOARD}, https://admin.example.com"})
    yield app
    with app.app_context():
        state().db.dispose()


def test_cache_control_fits_each_response(client, acme):
    facets = client.get(FACETS, headers=acme)
    cases = {
        "facets": (facets, "private, no-cache"),
        "304": (
            client.get(FACETS, headers={**acme, "If-None-Match": facets.headers["ETag"]}),
            "private, no-cache",
        ),
        "list": (client.get("/api/v1/org/acme/sandboxes", headers=acme), "no-store"),
        "401": (client.get(FACETS), "no-store"),
        "404": (client.get("/nowhere"), "no-store"),
        "openapi": (client.get("/openapi.json"), "no-store"),
        "docs": (client.get("/docs"), "no-store"),
        "asset": (client.get("/docs/static/swagger-ui.css"), "public, max-age=86400"),
        "healthz": (client.get("/healthz"), "no-store"),
    }
    for name, (response, cache_control) in cases.items():
        assert response.headers["Cache-Control"] == cache_control, name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert "Server" not in response.headers, name
        response.close()
    assert "default-src 'none'" in facets.headers["Content-Security-Policy"]
    assert "Content-Security-Policy" not in cases["docs"][0].headers  # Swagger UI runs scripts


def test_no_cors_without_configured_origins(client, acme):
    response = client.get(FACETS, headers={**acme, "Origin": DASHBOARD})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_for_a_configured_origin_exposes_the_etag(cors_app, app_config):
    world = World(cors_app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    client = cors_app.test_client()
    response = client.get(FACETS, headers={**owner.headers, "Origin": DASHBOARD})
    assert response.headers["Access-Control-Allow-Origin"] == DASHBOARD
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Retry-After", "RateLimit-Remaining", "X-Request-ID"} <= exposed
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    # Errors are readable by the dashboard too.
    error = client.get(FACETS, headers={"Origin": DASHBOARD})
    assert error.status_code == 401
    assert error.headers["Access-Control-Allow-Origin"] == DASHBOARD


def test_cors_ignores_other_origins(cors_app):
    response = cors_app.test_client().get(FACETS, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


A_SANDBOX = "/api/v1/org/acme/sandboxes/00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize(("path", "method"), [(FACETS, "GET"), (A_SANDBOX, "PATCH")])
def test_a_preflight_needs_no_credential(cors_app, path, method):
    response = cors_app.test_client().options(
        path,
        headers={
            "Origin": DASHBOARD,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, if-none-match, x-client-version",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert method in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    for header in ("authorization", "if-none-match", "x-client-version"):
        assert header in allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_cors_is_for_the_api_only(cors_app):
    response = cors_app.test_client().get("/healthz", headers={"Origin": DASHBOARD})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.fixture
def one_origin_app(app_config):
    app = create_app({**app_config, "CORS_ORIGINS": DASHBOARD})
    yield app
    with app.app_context():
        state().db.dispose()


def _vary(response) -> list[str]:
    return [v.strip() for line in response.headers.getlist("Vary") for v in line.split(",")]


@pytest.mark.parametrize("configured", ["one", "two"])
@pytest.mark.parametrize(
    "origin", [DASHBOARD, "https://evil.example", None], ids=["allowed", "other", "none"]
)
def test_with_cors_on_every_api_response_varies_on_origin(
    cors_app, one_origin_app, configured, origin
):
    app = one_origin_app if configured == "one" else cors_app
    world = World(app)
    world.org("acme")
    owner = world.caller("acme", "owner")
    client = app.test_client()
    headers = {"Origin": origin} if origin else {}
    responses = {
        "200": client.get(FACETS, headers={**owner.headers, **headers}),
        "401": client.get(FACETS, headers=headers),
        "preflight": client.options(
            FACETS, headers={**headers, "Access-Control-Request-Method": "GET"}
        ),
    }
    for name, response in responses.items():
        assert _vary(response).count("Origin") == 1, (name, response.headers.getlist("Vary"))
    if origin == DASHBOARD:
        assert responses["200"].headers["Access-Control-Allow-Origin"] == DASHBOARD


def test_vary_on_origin_is_for_the_api_only(cors_app):
    assert "Vary" not in cors_app.test_client().get("/healthz").headers
