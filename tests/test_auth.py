"""Bearer authentication: API keys (found by prefix, checked by hash) and HS256 JWTs."""

from __future__ import annotations

import hashlib
import time
import uuid
import warnings
from datetime import timedelta

import jwt
import pytest
from conftest import JWT_SECRET, make_jwt, statements
from sqlalchemy import select

from facets.extensions import state
from models import ApiKey
from models.services import accounts

FACETS = "/api/v1/org/acme/sandboxes/facets"


@pytest.fixture
def member(world):
    """A member of acme (which has one running sandbox) with a live API key."""
    world.org("acme")
    world.sandboxes("acme", None, "running", 1)
    return world.caller("acme", "member")


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def assert_401(response, type_: str) -> None:
    assert response.status_code == 401, response.json
    assert (response.json["code"], response.json["type"]) == (401, type_)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def issue_key(app, email: str, expires_in: timedelta | None = None) -> str:
    with app.app_context(), state().unit_of_work() as uow:
        return accounts.create_api_key(uow, email=email, expires_in=expires_in).key


def revoke_key(app, key: str) -> None:
    with app.app_context(), state().unit_of_work() as uow:
        accounts.revoke_api_key(uow, prefix=key[: accounts.API_KEY_PREFIX_LEN])


# --- API keys -------------------------------------------------------------------------------


def test_valid_api_key(client, member):
    response = client.get(FACETS, headers=member.headers)
    assert response.status_code == 200
    assert response.json["states"] == [{"value": "running", "count": 1}]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_scheme_is_case_insensitive(client, member, scheme):
    response = client.get(FACETS, headers={"Authorization": f"{scheme} {member.key}"})
    assert response.status_code == 200


def forged_keys(key: str) -> list[str]:
    """Keys that must not authenticate: unknown prefixes, and a known prefix with a wrong secret."""
    prefix_len = accounts.API_KEY_PREFIX_LEN
    wrong_last = "A" if key[-1] != "A" else "B"
    return [
        "sk_00000000_" + "x" * 43,  # an unknown prefix
        "sk_",
        "sk_short",
        key[:prefix_len],  # the public prefix alone
        key[:-1] + wrong_last,  # the right prefix, one character of the secret wrong
        key + "x",
        key[:prefix_len] + "_guess",
        "sk_\x00bogus1_" + "x" * 43,  # PostgreSQL refuses NUL: never sent to it
        "sk_ABCDEF01_" + "x" * 43,  # a prefix no key is issued with (lowercase hex only)
    ]


def test_unknown_or_forged_api_keys_are_authentication_errors(client, member):
    for forged in forged_keys(member.key):
        response = client.get(FACETS, headers=bearer(forged))
        assert_401(response, "authentication_error")
        assert forged not in response.get_data(as_text=True)


@pytest.mark.parametrize("prefix", ["sk_\x00bogus1", "sk_ABCDEF01", "sk_0000000g", "sk_1234"])
def test_a_prefix_no_key_is_issued_with_costs_no_statement(app, client, member, prefix):
    with statements(app) as seen:
        response = client.get(FACETS, headers=bearer(prefix + "_" + "x" * 43))
    assert_401(response, "authentication_error")
    assert seen == []


def test_revoked_api_key(app, client, member):
    revoke_key(app, member.key)
    assert_401(client.get(FACETS, headers=member.headers), "authentication_error")


def test_revoked_and_unknown_keys_are_indistinguishable(app, client, member):
    revoke_key(app, member.key)
    revoked = client.get(FACETS, headers=member.headers)
    unknown = client.get(FACETS, headers=bearer("sk_00000000_" + "x" * 43))
    assert revoked.json == unknown.json


def test_other_keys_of_the_user_survive_a_revocation(app, client, member):
    second = issue_key(app, member.email)
    revoke_key(app, member.key)
    assert client.get(FACETS, headers=bearer(second)).status_code == 200


def test_expired_api_key(app, client, member):
    expired = issue_key(app, member.email, expires_in=timedelta(seconds=-1))
    assert_401(client.get(FACETS, headers=bearer(expired)), "expired_token_error")


def test_key_not_yet_expired_works(app, client, member):
    live = issue_key(app, member.email, expires_in=timedelta(hours=1))
    assert client.get(FACETS, headers=bearer(live)).status_code == 200


def test_expiry_is_not_revealed_without_the_secret(app, client, member):
    expired = issue_key(app, member.email, expires_in=timedelta(seconds=-1))
    wrong = expired[: accounts.API_KEY_PREFIX_LEN] + "_" + "y" * 43
    assert_401(client.get(FACETS, headers=bearer(wrong)), "authentication_error")


def test_revoked_expired_key_is_an_authentication_error(app, client, member):
    expired = issue_key(app, member.email, expires_in=timedelta(seconds=-1))
    revoke_key(app, expired)
    assert_401(client.get(FACETS, headers=bearer(expired)), "authentication_error")


def test_stored_key_row_holds_only_prefix_and_sha256(app, runner, member):
    result = runner.invoke(args=["tokens", "create", member.email])
    assert result.exit_code == 0, result.output
    key = result.stdout.splitlines()[-1]
    prefix = key[: accounts.API_KEY_PREFIX_LEN]
    secret = key[len(prefix) + 1 :]  # sk_<8 hex>_<secret>
    with app.app_context(), state().db.read_session() as session:
        row = (
            session.execute(select(ApiKey.__table__).where(ApiKey.prefix == prefix))
            .mappings()
            .one()
        )
    assert row["secret_sha256"] == hashlib.sha256(key.encode()).hexdigest()
    for column, value in row.items():
        text = str(value)
        assert key not in text, column
        assert secret not in text, column
        assert secret[:12] not in text, column


# --- JWTs -----------------------------------------------------------------------------------


def test_valid_jwt(client, member):
    response = client.get(FACETS, headers=bearer(make_jwt(member.user_id)))
    assert response.status_code == 200
    assert response.json["states"] == [{"value": "running", "count": 1}]


def test_expired_jwt(client, member):
    token = make_jwt(member.user_id, expires_in=-10)
    assert_401(client.get(FACETS, headers=bearer(token)), "expired_signature_error")


def make_jwt_alg(user_id: uuid.UUID, algorithm: str) -> str:
    """A token signed with the app's secret but another algorithm than HS256."""
    with warnings.catch_warnings():  # the test secret is short for HS512; irrelevant here
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode({"sub": str(user_id), "exp": 9999999999}, JWT_SECRET, algorithm)


def split(token: str) -> list[str]:
    return token.split(".")


BAD_TOKENS = {
    "wrong-secret": lambda uid: make_jwt(uid, secret="another-secret-that-is-long-enough-for-hs"),
    "tampered-payload": lambda uid: ".".join(
        [split(make_jwt(uid))[0], split(make_jwt(uuid.uuid4()))[1], split(make_jwt(uid))[2]]
    ),
    "no-signature": lambda uid: ".".join(split(make_jwt(uid))[:2]) + ".",
    "two-parts": lambda uid: ".".join(split(make_jwt(uid))[:2]),
    "alg-none": lambda uid: jwt.encode({"sub": str(uid), "exp": 9999999999}, None, "none"),
    "hs512": lambda uid: make_jwt_alg(uid, "HS512"),
    "missing-exp": lambda uid: make_jwt(uid, exp=None),
    "missing-iat": lambda uid: make_jwt(uid, iat=None),
    "exp-in-year-9999": lambda uid: make_jwt(uid, exp=253402300799),
    "lives-a-second-past-jwt-max-age": lambda uid: make_jwt(uid, expires_in=86401),
    "iat-in-the-future": lambda uid: make_jwt(uid, iat=time.time() + 3600, expires_in=7200),
    "iat-a-string-of-long-ago": lambda uid: make_jwt(uid, iat="0"),
    "iat-true": lambda uid: make_jwt(uid, iat=True),
    "missing-sub": lambda uid: jwt.encode({"exp": 9999999999}, JWT_SECRET, "HS256"),
    "sub-not-a-uuid": lambda uid: make_jwt("alice"),
    "garbage": lambda uid: "not-a-jwt",
    "three-garbage-parts": lambda uid: "abc.def.ghi",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_jwts_are_token_errors(client, member, case):
    token = BAD_TOKENS[case](member.user_id)
    response = client.get(FACETS, headers=bearer(token))
    assert_401(response, "token_error")
    assert token not in response.get_data(as_text=True)


def test_expired_jwt_with_a_wrong_signature_is_a_token_error(client, member):
    token = make_jwt(member.user_id, expires_in=-10, secret="wrong-secret-long-enough-for-hs256!!")
    assert_401(client.get(FACETS, headers=bearer(token)), "token_error")


# --- no credential --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": ""}, id="empty"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-credential"),
        pytest.param({"Authorization": "Bearer    "}, id="bearer-blank"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic"),
        pytest.param({"Authorization": "Token sk_abc"}, id="token-scheme"),
        pytest.param({"Authorization": "sk_abc"}, id="bare-key"),
        pytest.param({"Authorization": "Bearersk_abc"}, id="no-space"),
    ],
)
def test_missing_or_non_bearer_credential(client, member, headers):
    assert_401(client.get(FACETS, headers=headers), "authentication_error")


def test_non_bearer_scheme_with_a_valid_key_is_refused(client, member):
    headers = {"Authorization": f"Token {member.key}"}
    assert_401(client.get(FACETS, headers=headers), "authentication_error")


def test_authentication_comes_before_validation_and_org_lookup(client, member):
    for path in (f"{FACETS}?state=Bogus&project_id=nope", "/api/v1/org/nope/sandboxes/facets"):
        assert_401(client.get(path), "authentication_error")


def test_each_request_is_authenticated_on_its_own_within_one_app_context(app, client, world):
    """An app context (and its ``g``) can span requests; no authentication outcome may."""
    world.org("solo")
    owner = world.caller("solo", "owner")
    outsider = world.caller(None)
    facets = "/api/v1/org/solo/sandboxes/facets"
    with app.app_context():
        assert client.get(facets, headers=owner.headers).status_code == 200
        assert client.get(facets, headers=outsider.headers).status_code == 403
        assert client.get(facets).status_code == 401
        assert client.get(facets, headers=owner.headers).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("limits", ["limits on", "limits off"])
@pytest.mark.parametrize("credential", ["key", "jwt"])
@pytest.mark.parametrize("path", ["sandboxes/facets", "sandboxes", "projects"])
def test_an_org_read_costs_one_statement_for_credential_and_access(
    app, make_app, member, credential, path, limits, method
):
    """An API key and the caller's access to the org come in one statement (a JWT needs none),
    however many times the request asks who is calling (the rate limiter asks first)."""
    if limits == "limits on":
        app = make_app(RATE_LIMITS_ENABLED=True)
    client = app.test_client()
    headers = bearer(member.key if credential == "key" else make_jwt(member.user_id))
    url = f"/api/v1/org/acme/{path}"
    client.get(url, headers=headers)  # the facets' first read recounts: not under test
    with statements(app) as seen:
        response = client.open(url, method=method, headers=headers)
    assert response.status_code == 200, response.data
    if path == "sandboxes/facets":
        assert len(seen) == 1, seen
    else:
        assert "api_keys" not in " ".join(seen[1:]).lower(), seen


@pytest.mark.parametrize(
    ("who", "org", "status"),
    [
        ("member", "acme", 200),
        ("member", "nope", 404),
        ("outsider", "acme", 403),
        ("revoked", "nope", 401),
        ("revoked", "acme", 401),
        ("unknown", "acme", 401),
        ("member", "acme%00", 404),  # a slug no org can have (PostgreSQL refuses NUL)
        ("revoked", "acme%00", 401),
        ("unknown", "acme%00", 401),
    ],
)
def test_a_key_read_with_its_access_keeps_the_order_of_errors(
    app, client, world, member, who, org, status
):
    keys = {
        "member": member.key,
        "outsider": world.caller(None).key,
        "revoked": issue_key(app, member.email),
        "unknown": "sk_" + "a" * 40,
    }
    if who == "revoked":
        revoke_key(app, keys["revoked"])
    for path in ("sandboxes/facets", "sandboxes", "projects"):
        response = client.get(f"/api/v1/org/{org}/{path}", headers=bearer(keys[who]))
        assert response.status_code == status, (path, response.json)


@pytest.mark.parametrize("credential", ["key", "jwt"])
@pytest.mark.parametrize("slug", ["acme%00", "Acme", "a" * 64])
def test_a_slug_no_org_can_have_is_404_on_reads_and_writes(client, member, credential, slug):
    headers = bearer(member.key if credential == "key" else make_jwt(member.user_id))
    base = f"/api/v1/org/{slug}"
    for response in (
        client.get(f"{base}/sandboxes/facets", headers=headers),
        client.get(f"{base}/projects", headers=headers),
        client.post(f"{base}/sandboxes", json={}, headers=headers),
    ):
        assert response.status_code == 404, response.json
        assert response.json["type"] == "not_found_error"
