"""One error envelope for every non-2xx response, and X-Request-ID on every response."""

from __future__ import annotations

import re
import uuid

import pytest
from conftest import JWT_SECRET, make_jwt

import marshmallow as ma

from facets import create_app
from facets.api.blueprint import Blueprint
from facets.extensions import state

FACETS = "/api/v1/org/acme/sandboxes/facets"
# The spec's list of error types (APIErrorPayload.type).
SPEC_ERROR_TYPES = set(
    "already_exists_error app_error authentication_error conflict_error aws_error "
    "configuration_error database_error dynamodb_error e2b_error e2b_rate_limit_error "
    "expired_signature_error expired_token_error forbidden_error group_error invalid_error "
    "invalid_flag_error invalid_username_error mail_error member_exists_error "
    "member_limit_exceeded_error migration_lock_timeout_error not_found_error "
    "oauth_config_error org_sandbox_capacity_exceeded_error bad_gateway_error "
    "gateway_timeout_error s3_error server_error task_error stripe_error token_error "
    "upgrade_required_error usage_limit_exceeded_error user_verification_error "
    "validation_error".split()
)
INTERNALS = "internal-detail-7f3a: /srv/secret/path.py"


class EchoSchema(ma.Schema):
    name = ma.fields.String(required=True)


@pytest.fixture
def app(app):
    """The leg's app plus throwaway routes: one raising, one reading a JSON body."""
    blp = Blueprint("throwaway", __name__, url_prefix="/throwaway")

    @blp.route("/boom")
    def boom():
        raise RuntimeError(INTERNALS)

    @blp.route("/echo", methods=["POST"])
    @blp.arguments(EchoSchema)
    def echo(body):
        return body

    with app.app_context():
        state().api.register_blueprint(blp)
    return app


def assert_envelope(response, status: int, type_: str | None = None) -> dict:
    """The body is exactly the envelope, with code equal to the status."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert set(body) in ({"code", "detail", "type"}, {"code", "detail", "type", "errors"})
    assert body["code"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["type"] in SPEC_ERROR_TYPES
    if type_ is not None:
        assert body["type"] == type_
    return body


@pytest.mark.parametrize(
    "path", ["/nope", "/api/v1/org/acme/nope", "/api/v1/org/acme/sandboxes/facets/extra", "/api"]
)
def test_unknown_route_is_404(client, path):
    assert_envelope(client.get(path), 404, "not_found_error")


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_wrong_method_is_405_keeping_allow(client, method):
    response = getattr(client, method)(FACETS)
    assert_envelope(response, 405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "GET" in allowed
    assert method.upper() not in allowed


def test_validation_error_is_422_with_items(client, world):
    world.org("acme")
    owner = world.caller("acme", "owner")
    response = client.get(f"{FACETS}?state=nope&project_id=x", headers=owner.headers)
    body = assert_envelope(response, 422, "validation_error")
    assert isinstance(body["errors"], list) and len(body["errors"]) == 2
    for item in body["errors"]:
        assert set(item) == {"loc", "msg", "type"}
        assert isinstance(item["loc"], list) and item["loc"][0] == "query"
        assert isinstance(item["msg"], str) and item["msg"]
        assert isinstance(item["type"], str) and item["type"]


@pytest.mark.parametrize(
    "data",
    [
        "{bad json",
        '{"name": ',
        "[1, 2",
        "\x00",
        "  ",
        b"\xff\xfe",  # not UTF-8
        '{"name": "\\ud800"}',  # a lone surrogate: neither a driver nor the encoder takes it
        '{"\\udc00": 1}',  # the same in a key, which a 422 would have echoed
        pytest.param("[" * 5000 + "]" * 5000, id="deep"),  # json.loads: RecursionError
    ],
)
def test_malformed_json_body_is_400(client, data):
    response = client.post("/throwaway/echo", data=data, content_type="application/json")
    assert_envelope(response, 400, "invalid_error")


def test_the_api_reads_json_bodies_as_the_throwaway_route_does(client, world):
    world.org("acme")
    member = world.caller("acme", "member")
    response = client.post(
        "/api/v1/org/acme/sandboxes",
        data='{"\\udc00": 1}',
        content_type="application/json",
        headers=member.headers,
    )
    assert_envelope(response, 400, "invalid_error")


def test_a_body_over_max_content_length_is_413_before_it_is_read(make_app, world):
    app = make_app(MAX_CONTENT_LENGTH=1024)
    world.org("acme")
    owner = world.caller("acme", "owner")
    client = app.test_client()
    url = "/api/v1/org/acme/projects"
    body = {"key": "big", "name": "x" * 2000}
    response = client.post(url, json=body, headers=owner.headers)
    envelope = assert_envelope(response, 413, "invalid_error")
    assert "larger than the 1024 bytes" in envelope["detail"]
    small = client.post(url, json={"key": "small", "name": "x" * 100}, headers=owner.headers)
    assert small.status_code == 201, small.json


def test_json_body_validation_is_422_located_in_the_body(client):
    response = client.post("/throwaway/echo", json={"name": 3})
    body = assert_envelope(response, 422, "validation_error")
    assert [item["loc"] for item in body["errors"]] == [["json", "name"]]
    assert client.post("/throwaway/echo", json={"name": "ok"}).json == {"name": "ok"}


def test_unhandled_exception_is_500_without_internals(client, caplog):
    response = client.get("/throwaway/boom", headers={"X-Request-ID": "req-boom-1"})
    body = assert_envelope(response, 500, "server_error")
    text = response.get_data(as_text=True)
    for leak in ("Traceback", "RuntimeError", INTERNALS, "secret", ".py"):
        assert leak not in text
    assert response.headers["X-Request-ID"] == "req-boom-1"
    assert "errors" not in body
    # the operator still gets the traceback, tied to the request id
    assert any(r.exc_info and "req-boom-1" in r.getMessage() for r in caplog.records)


@pytest.fixture
def unreachable_app(leg, tmp_path):
    """An app whose database cannot be reached: a closed port, or a file in a missing dir."""
    if leg == "real":
        url = "postgresql://postgres@127.0.0.1:1/facets_unreachable"
    else:
        url = f"sqlite:///{tmp_path / 'missing-dir' / 'facets.sqlite3'}"
    config = {"TESTING": True, "JWT_SECRET": JWT_SECRET, "LOG_LEVEL": "CRITICAL"}
    app = create_app({**config, "DATABASE_URL": url, "REDIS_URL": "fakeredis://"})
    yield app
    with app.app_context():
        state().db.dispose()
    assert not (tmp_path / "missing-dir").exists()


@pytest.mark.parametrize("credential", ["api_key", "jwt"])
def test_database_unreachable_is_500_database_error(unreachable_app, credential):
    token = "sk_0123abcd_" + "s" * 43 if credential == "api_key" else make_jwt(uuid.uuid4())
    response = unreachable_app.test_client().get(
        FACETS, headers={"Authorization": f"Bearer {token}"}
    )
    body = assert_envelope(response, 500, "database_error")
    text = response.get_data(as_text=True).lower()
    leaks = ("psycopg", "sqlite", "connection refused", "unable to open", "127.0.0.1")
    for leak in (*leaks, "port", "operationalerror", "missing-dir", "select"):
        assert leak not in text, leak
    assert "errors" not in body


# --- X-Request-ID ---------------------------------------------------------------------------

SANE_IDS = ["abc", "req-123_x.y:z", "0" * 128, "7f1c2e3a-6a1b-4e5f-9d7c-1b2a3c4d5e6f"]
INSANE_IDS = ["", "has space", "x" * 129, "<script>", "a;b", "tab\there", "naïve", "a/b"]


def assert_fresh_id(value: str, sent: str) -> None:
    assert value and value != sent
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", value)


@pytest.mark.parametrize("request_id", SANE_IDS)
@pytest.mark.parametrize("path", ["/openapi.json", "/nope", FACETS, "/throwaway/boom"])
def test_sane_request_id_is_echoed(client, path, request_id):
    response = client.get(path, headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize("request_id", INSANE_IDS)
@pytest.mark.parametrize("path", ["/openapi.json", FACETS])
def test_insane_request_id_is_replaced(client, path, request_id):
    response = client.get(path, headers={"X-Request-ID": request_id})
    assert_fresh_id(response.headers["X-Request-ID"], request_id)


def test_every_response_gets_a_request_id_of_its_own(client):
    ids = {client.get(path).headers.get("X-Request-ID") for path in ["/openapi.json", "/nope"] * 2}
    assert None not in ids
    assert len(ids) == 4


def test_database_error_carries_the_request_id(unreachable_app):
    response = unreachable_app.test_client().get(
        FACETS, headers={"Authorization": "Bearer sk_0123abcd_x", "X-Request-ID": "db-down-1"}
    )
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "db-down-1"


def test_authentication_error_carries_the_request_id(client):
    response = client.get(FACETS, headers={"X-Request-ID": "auth-1"})
    assert_envelope(response, 401, "authentication_error")
    assert response.headers["X-Request-ID"] == "auth-1"
