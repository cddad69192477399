"""The sandbox endpoints: list, create, patch and delete, for every role and error."""

from __future__ import annotations

import uuid

import pytest

BASE = "/api/v1/org/acme/sandboxes"
BASE_DOC = "/api/v1/org/{org}/sandboxes"


@pytest.fixture
def acme(world):
    """An org with two projects, an owner, an admin, a member of ``web`` and an outsider."""
    world.org("acme")
    web = world.project("acme", "web", "Web")
    api = world.project("acme", "api", "API")
    return {
        "web": web,
        "api": api,
        "owner": world.caller("acme", "owner"),
        "admin": world.caller("acme", "admin"),
        "member": world.caller("acme", "member", projects_=[web]),
        "outsider": world.caller(None),
    }


def ids(response) -> set[str]:
    return {s["id"] for s in response.json["sandboxes"]}


def assert_error(response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.json
    assert response.json["code"] == status
    assert response.json["type"] == type_
    return response.json


# --- auth and org ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", BASE),
        ("post", BASE),
        ("patch", f"{BASE}/{uuid.uuid4()}"),
        ("delete", f"{BASE}/{uuid.uuid4()}"),
    ],
)
def test_every_endpoint_needs_a_credential_before_validation(client, acme, method, path):
    response = getattr(client, method)(path, json={"bogus": 1})
    assert_error(response, 401, "authentication_error")


@pytest.mark.parametrize("method", ["get", "post"])
def test_outsider_is_forbidden_and_unknown_org_is_not_found(client, acme, method):
    outsider, owner = acme["outsider"], acme["owner"]
    assert_error(getattr(client, method)(BASE, headers=outsider.headers), 403, "forbidden_error")
    response = getattr(client, method)("/api/v1/org/nope/sandboxes", headers=owner.headers)
    assert_error(response, 404, "not_found_error")


# --- list -----------------------------------------------------------------------------------


def test_list_shows_each_role_what_the_facets_count(client, world, acme):
    in_web = world.sandboxes("acme", acme["web"], "running", 2)
    in_api = world.sandboxes("acme", acme["api"], "paused", 2)
    loose = world.sandboxes("acme", None, "killed", 1)
    everything = {str(i) for i in in_web + in_api + loose}
    for role in ("owner", "admin"):
        assert ids(client.get(BASE, headers=acme[role].headers)) == everything
    member_view = {str(i) for i in in_web + loose}
    response = client.get(BASE, headers=acme["member"].headers)
    assert ids(response) == member_view
    assert response.json["next_cursor"] is None


def test_list_items_have_the_contract_fields_newest_first(client, world, acme):
    first, second = world.sandboxes("acme", acme["web"], "paused", 2)
    response = client.get(BASE, headers=acme["owner"].headers)
    assert response.status_code == 200
    items = response.json["sandboxes"]
    assert [i["id"] for i in items] == [str(second), str(first)]
    assert set(items[0]) == {"id", "project_id", "state", "created_at", "updated_at"}
    assert items[0]["project_id"] == str(acme["web"])
    assert items[0]["state"] == "paused"
    assert items[0]["created_at"].endswith("+00:00")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("state=running", {"web-running", "none-running"}),
        ("state=running&state=killed", {"web-running", "none-running", "api-killed"}),
        ("state=paused,killed", {"web-paused", "api-killed"}),
        ("state=", {"web-running", "web-paused", "api-killed", "none-running"}),
        ("project_id={web}", {"web-running", "web-paused"}),
        ("project_id={web}&state=paused", {"web-paused"}),
        ("project_id={other}", set()),
    ],
)
def test_list_filters_parse_like_the_facets(client, world, acme, query, expected):
    made = {
        "web-running": world.sandboxes("acme", acme["web"], "running")[0],
        "web-paused": world.sandboxes("acme", acme["web"], "paused")[0],
        "api-killed": world.sandboxes("acme", acme["api"], "killed")[0],
        "none-running": world.sandboxes("acme", None, "running")[0],
    }
    query = query.format(web=acme["web"], other=uuid.uuid4())
    response = client.get(f"{BASE}?{query}", headers=acme["owner"].headers)
    assert response.status_code == 200
    assert ids(response) == {str(made[name]) for name in expected}


def test_member_filtering_on_an_invisible_project_sees_nothing(client, world, acme):
    world.sandboxes("acme", acme["api"], "running", 2)
    response = client.get(f"{BASE}?project_id={acme['api']}", headers=acme["member"].headers)
    assert response.status_code == 200
    assert response.json == {"sandboxes": [], "next_cursor": None}


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("state=bogus", "state"),
        ("project_id=not-a-uuid", "project_id"),
    ],
)
def test_bad_list_arguments_are_422_with_their_location(client, acme, query, field):
    response = client.get(f"{BASE}?{query}", headers=acme["owner"].headers)
    body = assert_error(response, 422, "validation_error")
    assert [item["loc"] for item in body["errors"]] == [["query", field]]


def test_limit_defaults_to_50_and_allows_200(client, world, acme):
    world.sandboxes("acme", None, "running", 201)
    owner = acme["owner"].headers
    default = client.get(BASE, headers=owner)
    assert len(default.json["sandboxes"]) == 50
    assert default.json["next_cursor"]
    biggest = client.get(f"{BASE}?limit=200", headers=owner)
    assert len(biggest.json["sandboxes"]) == 200
    rest = client.get(f"{BASE}?limit=200&cursor={biggest.json['next_cursor']}", headers=owner)
    assert len(rest.json["sandboxes"]) == 1
    assert rest.json["next_cursor"] is None


# --- create ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_create_defaults_to_running_without_a_project(client, acme, role):
    response = client.post(BASE, json={}, headers=acme[role].headers)
    assert response.status_code == 201
    assert response.json["state"] == "running"
    assert response.json["project_id"] is None
    assert ids(client.get(BASE, headers=acme[role].headers)) == {response.json["id"]}


def test_create_without_a_body_is_the_defaults(client, acme):
    response = client.post(BASE, headers=acme["owner"].headers)
    assert response.status_code == 201
    assert response.json["state"] == "running"


@pytest.mark.parametrize(
    "role, project, status",
    [
        ("owner", "api", 201),
        ("admin", "api", 201),
        ("member", "web", 201),
        ("member", "api", 404),
    ],
)
def test_create_in_a_project_follows_visibility(client, acme, role, project, status):
    body = {"project_id": str(acme[project]), "state": "paused"}
    response = client.post(BASE, json=body, headers=acme[role].headers)
    assert response.status_code == status
    if status == 201:
        assert response.json["project_id"] == str(acme[project])
        assert response.json["state"] == "paused"
    else:
        assert_error(response, 404, "not_found_error")


def test_a_project_the_member_is_not_in_answers_as_an_unknown_one(client, acme):
    """Creating in, or moving into, a project the member is not in says nothing that a random
    id would not: same status, same envelope, same message."""
    member = acme["member"]
    created = client.post(BASE, json={}, headers=member.headers)
    path = f"{BASE}/{created.json['id']}"
    for send in (
        lambda body: client.post(BASE, json=body, headers=member.headers),
        lambda body: client.patch(path, json=body, headers=member.headers),
    ):
        hidden = send({"project_id": str(acme["api"])})
        unknown = send({"project_id": str(uuid.uuid4())})
        assert (hidden.status_code, hidden.json) == (unknown.status_code, unknown.json)
        assert_error(hidden, 404, "not_found_error")


@pytest.mark.parametrize("role", ["owner", "member"])
def test_create_in_an_unknown_or_foreign_project_is_not_found(client, world, acme, role):
    world.org("other")
    foreign = world.project("other", "web")
    for project_id in (uuid.uuid4(), foreign):
        body = {"project_id": str(project_id)}
        response = client.post(BASE, json=body, headers=acme[role].headers)
        assert_error(response, 404, "not_found_error")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"state": "killed"}, "state"),
        ({"state": "bogus"}, "state"),
        ({"state": None}, "state"),
        ({"state": 3}, "state"),
        ({"project_id": "not-a-uuid"}, "project_id"),
        ({"project_id": 12}, "project_id"),
        ({"name": "x"}, "name"),
    ],
)
def test_create_rejects_bad_bodies_with_their_location(client, acme, body, field):
    response = client.post(BASE, json=body, headers=acme["owner"].headers)
    body = assert_error(response, 422, "validation_error")
    assert [item["loc"] for item in body["errors"]] == [["json", field]]


def test_create_rejects_a_body_that_is_not_an_object(client, acme):
    response = client.post(BASE, json=[1], headers=acme["owner"].headers)
    assert_error(response, 422, "validation_error")


# --- patch ----------------------------------------------------------------------------------


def patch(client, caller, sandbox_id, body):
    return client.patch(f"{BASE}/{sandbox_id}", json=body, headers=caller.headers)


def test_patch_changes_state_and_project(client, world, acme):
    owner = acme["owner"]
    (sandbox,) = world.sandboxes("acme", acme["web"], "running")
    response = patch(client, owner, sandbox, {"state": "paused"})
    assert response.status_code == 200
    assert response.json["state"] == "paused"
    assert response.json["project_id"] == str(acme["web"])
    assert response.json["updated_at"] >= response.json["created_at"]
    response = patch(client, owner, sandbox, {"project_id": str(acme["api"])})
    assert (response.json["state"], response.json["project_id"]) == ("paused", str(acme["api"]))
    response = patch(client, owner, sandbox, {"project_id": None, "state": "running"})
    assert (response.json["state"], response.json["project_id"]) == ("running", None)


@pytest.mark.parametrize("body", [{}, {"state": "running"}, {"project_id": None}])
def test_patch_that_changes_nothing_is_200(client, world, acme, body):
    (sandbox,) = world.sandboxes("acme", None, "running")
    response = patch(client, acme["owner"], sandbox, body)
    assert response.status_code == 200
    assert response.json["state"] == "running"
    assert response.json["updated_at"] == response.json["created_at"]


def test_killed_is_terminal(client, world, acme):
    owner = acme["owner"]
    (sandbox,) = world.sandboxes("acme", acme["web"], "killed")
    for body in ({"state": "running"}, {"state": "paused"}, {"project_id": None}):
        assert_error(patch(client, owner, sandbox, body), 409, "conflict_error")
    for body in ({}, {"state": "killed"}, {"project_id": str(acme["web"])}):
        response = patch(client, owner, sandbox, body)
        assert response.status_code == 200
        assert response.json["state"] == "killed"


def test_member_moves_only_into_projects_they_belong_to(client, world, acme):
    member = acme["member"]
    (sandbox,) = world.sandboxes("acme", None, "running")
    response = patch(client, member, sandbox, {"project_id": str(acme["api"])})
    assert_error(response, 404, "not_found_error")
    response = patch(client, member, sandbox, {"project_id": str(acme["web"])})
    assert response.status_code == 200
    assert patch(client, member, sandbox, {"project_id": None}).status_code == 200


def test_patch_into_an_unknown_project_is_not_found(client, world, acme):
    (sandbox,) = world.sandboxes("acme", None, "running")
    response = patch(client, acme["owner"], sandbox, {"project_id": str(uuid.uuid4())})
    assert_error(response, 404, "not_found_error")


def test_patch_of_an_invisible_foreign_or_missing_sandbox_is_not_found(client, world, acme):
    (hidden,) = world.sandboxes("acme", acme["api"], "running")
    world.org("other")
    (foreign,) = world.sandboxes("other", None, "running")
    assert_error(patch(client, acme["member"], hidden, {"state": "paused"}), 404, "not_found_error")
    for sandbox in (foreign, uuid.uuid4()):
        response = patch(client, acme["owner"], sandbox, {"state": "paused"})
        assert_error(response, 404, "not_found_error")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"state": "bogus"}, "state"),
        ({"state": None}, "state"),
        ({"project_id": "x"}, "project_id"),
        ({"id": "x"}, "id"),
    ],
)
def test_patch_rejects_bad_bodies_with_their_location(client, world, acme, body, field):
    (sandbox,) = world.sandboxes("acme", None, "running")
    body = assert_error(patch(client, acme["owner"], sandbox, body), 422, "validation_error")
    assert [item["loc"] for item in body["errors"]] == [["json", field]]


# --- delete ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_delete_is_204_then_404(client, world, acme, role):
    (sandbox,) = world.sandboxes("acme", acme["web"], "paused")
    caller = acme[role]
    response = client.delete(f"{BASE}/{sandbox}", headers=caller.headers)
    assert response.status_code == 204
    assert response.data == b""
    assert ids(client.get(BASE, headers=caller.headers)) == set()
    again = client.delete(f"{BASE}/{sandbox}", headers=caller.headers)
    assert_error(again, 404, "not_found_error")


def test_delete_of_an_invisible_or_foreign_sandbox_is_not_found(client, world, acme):
    (hidden,) = world.sandboxes("acme", acme["api"], "running")
    world.org("other")
    (foreign,) = world.sandboxes("other", None, "running")
    response = client.delete(f"{BASE}/{hidden}", headers=acme["member"].headers)
    assert_error(response, 404, "not_found_error")
    response = client.delete(f"{BASE}/{foreign}", headers=acme["owner"].headers)
    assert_error(response, 404, "not_found_error")
    assert ids(client.get(BASE, headers=acme["owner"].headers)) == {str(hidden)}


def test_writes_show_in_the_facets(client, world, acme):
    owner = acme["owner"].headers
    created = client.post(BASE, json={"project_id": str(acme["web"])}, headers=owner).json
    client.post(BASE, json={"state": "paused"}, headers=owner)
    patch(client, acme["owner"], created["id"], {"state": "killed"})
    facets = client.get(f"{BASE}/facets", headers=owner).json
    assert facets["states"] == [{"count": 1, "value": "killed"}, {"count": 1, "value": "paused"}]
    assert [(p["project_key"], p["count"]) for p in facets["projects"]] == [("web", 1)]


# --- OpenAPI --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, method, statuses",
    [
        (BASE_DOC, "get", {"200", "400", "401", "403", "404", "422"}),
        (BASE_DOC, "post", {"201", "401", "403", "404", "422"}),
        (f"{BASE_DOC}/{{sandbox_id}}", "patch", {"200", "401", "403", "404", "409", "422"}),
        (f"{BASE_DOC}/{{sandbox_id}}", "delete", {"204", "401", "403", "404"}),
    ],
)
def test_endpoints_are_documented(client, path, method, statuses):
    spec = client.get("/openapi.json").json
    operation = spec["paths"][path][method]
    assert statuses <= set(operation["responses"])
    assert operation["security"] == [{"bearerAuth": []}]
    assert operation["summary"]
    if method in ("post", "patch"):
        schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert schema.rsplit("/", 1)[1] in {"SandboxCreate", "SandboxUpdate"}
    names = [p["name"] for p in spec["paths"][path]["parameters"]]
    assert names[0] == "org"
