"""The OpenAPI document: the spec's component names, fields, enums and the facets responses."""

from __future__ import annotations

import re

import pytest
from conftest import make_jwt

FACETS_PATH = "/api/v1/org/{org}/sandboxes/facets"
FACETS = "/api/v1/org/acme/sandboxes/facets"
ERROR_STATUSES = ["400", "401", "403", "404", "409", "422", "426", "429", "500", "502", "504"]
# Copied from the spec, not from the code, so that a drift in either shows here.
SPEC_ERROR_CODES = [400, 401, 403, 404, 409, 422, 426, 429, 500, 502, 504]
SPEC_ERROR_TYPES = (
    "already_exists_error app_error authentication_error conflict_error aws_error "
    "configuration_error database_error dynamodb_error e2b_error e2b_rate_limit_error "
    "expired_signature_error expired_token_error forbidden_error group_error invalid_error "
    "invalid_flag_error invalid_username_error mail_error member_exists_error "
    "member_limit_exceeded_error migration_lock_timeout_error not_found_error "
    "oauth_config_error org_sandbox_capacity_exceeded_error bad_gateway_error "
    "gateway_timeout_error s3_error server_error task_error stripe_error token_error "
    "upgrade_required_error usage_limit_exceeded_error user_verification_error "
    "validation_error"
).split()

# component -> {field: (types allowed, required)}; "null" in the types means nullable.
SPEC_COMPONENTS = {
    "SandboxFacetsResponse": {
        "projects": ({"array"}, False),
        "states": ({"array"}, False),
    },
    "SandboxProjectFacetEntry": {
        "count": ({"integer"}, True),
        "project_id": ({"string", "null"}, False),
        "project_key": ({"string", "null"}, False),
        "project_name": ({"string", "null"}, False),
    },
    "SandboxStateFacetEntry": {
        "count": ({"integer"}, True),
        "value": ({"string"}, True),
    },
    "APIErrorPayload": {
        "code": ({"integer"}, True),
        "detail": ({"string"}, True),
        "errors": ({"array", "null"}, False),
        "type": ({"string"}, True),
    },
    "ValidationErrorItem": {
        "loc": ({"array"}, True),
        "msg": ({"string"}, True),
        "type": ({"string"}, True),
    },
}


@pytest.fixture
def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json


def types_of(schema: dict) -> set[str]:
    """The JSON types a (possibly anyOf / OAS 3.0 nullable) schema admits."""
    if "anyOf" in schema or "oneOf" in schema:
        return set().union(*(types_of(s) for s in schema.get("anyOf", schema.get("oneOf"))))
    if "$ref" in schema:
        return {"object"}
    declared = schema.get("type")
    types = set(declared) if isinstance(declared, list) else {declared}
    if schema.get("nullable"):
        types.add("null")
    return types


def branch(schema: dict, type_: str) -> dict:
    """The part of ``schema`` describing values of ``type_``."""
    for sub in schema.get("anyOf", schema.get("oneOf", [])):
        if type_ in types_of(sub):
            return sub
    return schema


def ref_of(schema: dict) -> str | None:
    if "$ref" in schema:
        return schema["$ref"]
    for sub in schema.get("anyOf", schema.get("oneOf", schema.get("allOf", []))):
        if "$ref" in sub:
            return sub["$ref"]
    return None


def component(name: str) -> str:
    return f"#/components/schemas/{name}"


def test_document_is_a_valid_openapi_document(document):
    from openapi_spec_validator import validate

    validate(document)


@pytest.mark.parametrize("name", sorted(SPEC_COMPONENTS))
def test_components_carry_the_spec_fields(document, name):
    schema = document["components"]["schemas"][name]
    assert types_of(schema) == {"object"}
    expected = SPEC_COMPONENTS[name]
    assert set(schema["properties"]) == set(expected)
    required = {field for field, (_, req) in expected.items() if req}
    assert set(schema.get("required", [])) == required
    for field, (types, _) in expected.items():
        assert types_of(schema["properties"][field]) == types, field


@pytest.mark.parametrize("component", ["ProjectCreate", "ProjectUpdate"])
def test_a_project_name_pattern_documents_the_nul_the_api_refuses(document, component):
    name = document["components"]["schemas"][component]["properties"]["name"]
    assert re.search(name["pattern"], "Web \u00e9quipe") is not None
    assert re.search(name["pattern"], "a\x00b") is None


def test_response_lists_hold_the_entry_components(document):
    schemas = document["components"]["schemas"]
    props = schemas["SandboxFacetsResponse"]["properties"]
    assert ref_of(props["projects"]["items"]) == component("SandboxProjectFacetEntry")
    assert ref_of(props["states"]["items"]) == component("SandboxStateFacetEntry")
    errors = branch(schemas["APIErrorPayload"]["properties"]["errors"], "array")
    assert ref_of(errors["items"]) == component("ValidationErrorItem")


def test_enums_are_the_spec_lists(document):
    schemas = document["components"]["schemas"]
    assert schemas["SandboxStateFacetEntry"]["properties"]["value"]["enum"] == [
        "running",
        "paused",
        "killed",
    ]
    payload = schemas["APIErrorPayload"]["properties"]
    assert payload["code"]["enum"] == SPEC_ERROR_CODES
    assert payload["type"]["enum"] == SPEC_ERROR_TYPES


def test_project_id_is_a_uuid(document):
    prop = document["components"]["schemas"]["SandboxProjectFacetEntry"]["properties"]
    assert branch(prop["project_id"], "string")["format"] == "uuid"


@pytest.fixture
def operation(document) -> dict:
    return document["paths"][FACETS_PATH]["get"]


def test_facets_operation_success_response(operation):
    assert operation["summary"] == "Get sandbox facets"
    content = operation["responses"]["200"]["content"]["application/json"]
    assert ref_of(content["schema"]) == component("SandboxFacetsResponse")


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_facets_operation_documents_each_error_status(operation, status):
    response = operation["responses"][status]
    assert response["description"]
    schema = response["content"]["application/json"]["schema"]
    assert ref_of(schema) == component("APIErrorPayload")


def test_facets_operation_parameters(document, operation):
    params = {p["name"]: p for p in operation["parameters"]}
    path_params = document["paths"][FACETS_PATH].get("parameters", [])
    params.update({p["name"]: p for p in path_params})
    assert set(params) == {"org", "state", "project_id", "wait"}
    assert params["org"]["in"] == "path" and params["org"]["required"] is True
    assert types_of(params["org"]["schema"]) == {"string"}

    state = params["state"]
    assert state["in"] == "query" and not state.get("required", False)
    array = branch(state["schema"], "array")
    assert "array" in types_of(state["schema"])
    assert array["items"]["type"] == "string"
    # Each occurrence is a state or a comma-separated list of them; the pattern says exactly that.
    item = re.compile(array["items"]["pattern"])
    for accepted in ("running", "paused", "killed", "running,paused", "", "killed, running"):
        assert item.fullmatch(accepted), accepted
    for refused in ("Running", "stopped", "running;paused", "runningpaused"):
        assert not item.fullmatch(refused), refused

    project = params["project_id"]
    assert project["in"] == "query" and not project.get("required", False)
    assert branch(project["schema"], "string")["format"] == "uuid"

    wait = params["wait"]
    assert wait["in"] == "query" and not wait.get("required", False)
    assert (wait["schema"]["minimum"], wait["schema"]["maximum"]) == (1, 60)
    assert "If-None-Match" in wait["description"]


def test_facets_operation_requires_bearer_auth(document, operation):
    assert operation["security"] == [{"bearerAuth": []}]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


# --- real bodies conform to the documented components --------------------------------------


def validator_for(document: dict, name: str):
    from openapi_schema_validator import OAS31Validator

    schema = {**document, "$ref": component(name)}
    return OAS31Validator(schema, format_checker=OAS31Validator.FORMAT_CHECKER)


def test_real_facets_body_matches_its_component(client, world, document):
    world.org("acme")
    owner = world.caller("acme", "owner")
    web = world.project("acme", "web", "Web")
    world.sandboxes("acme", web, "running", 2)
    world.sandboxes("acme", None, "killed", 1)
    body = client.get(FACETS, headers=owner.headers).json
    assert body["projects"] and body["states"]
    validator_for(document, "SandboxFacetsResponse").validate(body)


ERROR_REQUESTS = {
    "no-credential": (lambda owner: (FACETS, {}), 401),
    "expired-jwt": (lambda owner: (FACETS, bearer(make_jwt(owner.user_id, expires_in=-5))), 401),
    "unknown-org": (lambda owner: ("/api/v1/org/nope/sandboxes/facets", owner.headers), 404),
    "bad-state": (lambda owner: (FACETS + "?state=Running", owner.headers), 422),
    "bad-project": (lambda owner: (FACETS + "?project_id=zzz", owner.headers), 422),
    "unknown-route": (lambda owner: ("/nope", {}), 404),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("case", sorted(ERROR_REQUESTS))
def test_real_error_bodies_match_api_error_payload(client, world, document, case):
    world.org("acme")
    owner = world.caller("acme", "owner")
    build, status = ERROR_REQUESTS[case]
    path, headers = build(owner)
    response = client.get(path, headers=headers)
    assert response.status_code == status
    validator_for(document, "APIErrorPayload").validate(response.json)


def test_forbidden_body_matches_api_error_payload(client, world, document):
    world.org("acme")
    stranger = world.caller(None)
    response = client.get(FACETS, headers=stranger.headers)
    assert response.status_code == 403
    validator_for(document, "APIErrorPayload").validate(response.json)


# Each status's own type, from the spec's reading of the statuses (not from the code).
TYPE_OF_STATUS = {
    400: "invalid_error",
    401: "authentication_error",
    403: "forbidden_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "validation_error",
    426: "upgrade_required_error",
    429: "usage_limit_exceeded_error",
    500: "server_error",
    502: "bad_gateway_error",
    504: "gateway_timeout_error",
    # statuses of the HTTP layer, outside the spec's codes: the type of their class (README)
    413: "invalid_error",
    414: "invalid_error",
    431: "invalid_error",
    501: "server_error",
}


def test_each_documented_error_status_has_an_example_of_its_own(document):
    """Swagger UI shows the example: each status's carries that status's code and type."""
    seen = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            for status, response in operation.get("responses", {}).items():
                if not status.isdigit() or int(status) < 400:
                    continue
                example = response["content"]["application/json"].get("example")
                assert example is not None, (path, method, status)
                assert example["code"] == int(status), (path, method, status)
                assert example["type"] == TYPE_OF_STATUS[int(status)], (path, method, status)
                assert example["type"] in SPEC_ERROR_TYPES
                assert isinstance(example["detail"], str) and example["detail"]
                assert ("errors" in example) == (int(status) == 422)
                seen += 1
    assert seen > 50
