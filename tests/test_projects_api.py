"""The project endpoints: create, list, rename, delete and membership, for every role."""

from __future__ import annotations

import uuid

import pytest

BASE = "/api/v1/org/acme/projects"
SANDBOXES = "/api/v1/org/acme/sandboxes"


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


def assert_error(response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.json
    assert response.json["type"] == type_
    return response.json


def listed(client, caller) -> list[str]:
    response = client.get(BASE, headers=caller.headers)
    assert response.status_code == 200
    return [p["key"] for p in response.json["projects"]]


def visible_sandboxes(client, caller) -> set[str]:
    return {s["id"] for s in client.get(SANDBOXES, headers=caller.headers).json["sandboxes"]}


# --- auth and org ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", BASE),
        ("post", BASE),
        ("patch", f"{BASE}/{uuid.uuid4()}"),
        ("delete", f"{BASE}/{uuid.uuid4()}"),
        ("post", f"{BASE}/{uuid.uuid4()}/members"),
        ("delete", f"{BASE}/{uuid.uuid4()}/members/{uuid.uuid4()}"),
    ],
)
def test_every_endpoint_needs_a_credential_before_validation(client, acme, method, path):
    response = getattr(client, method)(path, json={"bogus": 1})
    assert_error(response, 401, "authentication_error")


def test_outsider_is_forbidden_and_unknown_org_is_not_found(client, acme):
    assert_error(client.get(BASE, headers=acme["outsider"].headers), 403, "forbidden_error")
    response = client.get("/api/v1/org/nope/projects", headers=acme["owner"].headers)
    assert_error(response, 404, "not_found_error")


# --- create and list ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_and_admin_create_projects(client, acme, role):
    body = {"key": "ml", "name": "ML Training"}
    response = client.post(BASE, json=body, headers=acme[role].headers)
    assert response.status_code == 201
    assert set(response.json) == {"id", "key", "name"}
    assert (response.json["key"], response.json["name"]) == ("ml", "ML Training")
    assert listed(client, acme[role]) == ["api", "ml", "web"]


def test_member_cannot_create_projects(client, acme):
    response = client.post(BASE, json={"key": "ml", "name": "ML"}, headers=acme["member"].headers)
    assert_error(response, 403, "forbidden_error")


def test_duplicate_key_is_already_exists(client, world, acme):
    body = {"key": "web", "name": "Again"}
    response = client.post(BASE, json=body, headers=acme["owner"].headers)
    assert_error(response, 409, "already_exists_error")
    world.org("other")
    other_owner = world.caller("other", "owner")
    body = {"key": "web", "name": "Web"}
    response = client.post("/api/v1/org/other/projects", json=body, headers=other_owner.headers)
    assert response.status_code == 201


@pytest.mark.parametrize(
    "body, fields",
    [
        ({"name": "No key"}, ["key"]),
        ({"key": "k"}, ["name"]),
        ({"key": "has space", "name": "x"}, ["key"]),
        ({"key": "-dash", "name": "x"}, ["key"]),
        ({"key": "k" * 33, "name": "x"}, ["key"]),
        ({"key": "web\n", "name": "x"}, ["key"]),  # Python's $ matches before a final newline
        ({"key": "k", "name": ""}, ["name"]),
        ({"key": "k", "name": 5}, ["name"]),
        ({"key": "k", "name": "a\u0000b"}, ["name"]),  # valid JSON, but no column holds NUL
        ({"key": "k", "name": "x", "owner": "me"}, ["owner"]),
    ],
)
def test_create_rejects_bad_bodies_with_their_location(client, acme, body, fields):
    response = client.post(BASE, json=body, headers=acme["owner"].headers)
    body = assert_error(response, 422, "validation_error")
    assert [item["loc"] for item in body["errors"]] == [["json", f] for f in fields]


def test_member_lists_only_their_projects(client, acme):
    assert listed(client, acme["owner"]) == ["api", "web"]
    assert listed(client, acme["member"]) == ["web"]


# --- rename ---------------------------------------------------------------------------------


def test_rename_changes_key_and_name(client, acme):
    owner = acme["owner"].headers
    path = f"{BASE}/{acme['web']}"
    response = client.patch(path, json={"name": "Website"}, headers=owner)
    assert response.status_code == 200
    assert response.json == {"id": str(acme["web"]), "key": "web", "name": "Website"}
    response = client.patch(path, json={"key": "site", "name": "Site"}, headers=owner)
    assert response.json == {"id": str(acme["web"]), "key": "site", "name": "Site"}
    assert client.patch(path, json={}, headers=owner).status_code == 200
    assert listed(client, acme["owner"]) == ["api", "site"]


def test_rename_to_a_taken_key_is_already_exists(client, acme):
    path = f"{BASE}/{acme['web']}"
    response = client.patch(path, json={"key": "api"}, headers=acme["owner"].headers)
    assert_error(response, 409, "already_exists_error")


def test_rename_to_a_name_with_nul_is_a_validation_error(client, acme):
    path = f"{BASE}/{acme['web']}"
    response = client.patch(path, json={"name": "We\u0000b"}, headers=acme["owner"].headers)
    body = assert_error(response, 422, "validation_error")
    assert [item["loc"] for item in body["errors"]] == [["json", "name"]]
    assert listed(client, acme["owner"]) == ["api", "web"]


def test_rename_rejects_unknown_fields(client, acme):
    path = f"{BASE}/{acme['web']}"
    response = client.patch(path, json={"id": "x"}, headers=acme["owner"].headers)
    body = assert_error(response, 422, "validation_error")
    assert [item["loc"] for item in body["errors"]] == [["json", "id"]]


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_member_is_forbidden_on_a_visible_project_and_not_told_of_an_invisible_one(
    client, acme, method
):
    member = acme["member"].headers
    visible = getattr(client, method)(f"{BASE}/{acme['web']}", json={"name": "x"}, headers=member)
    assert_error(visible, 403, "forbidden_error")
    hidden = getattr(client, method)(f"{BASE}/{acme['api']}", json={"name": "x"}, headers=member)
    assert_error(hidden, 404, "not_found_error")


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_foreign_or_missing_project_is_not_found(client, world, acme, method):
    world.org("other")
    foreign = world.project("other", "web")
    for project_id in (foreign, uuid.uuid4()):
        response = getattr(client, method)(
            f"{BASE}/{project_id}", json={"name": "x"}, headers=acme["owner"].headers
        )
        assert_error(response, 404, "not_found_error")


# --- delete ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_delete_keeps_the_sandboxes_without_a_project(client, world, acme, role):
    in_web = world.sandboxes("acme", acme["web"], "running", 2) + world.sandboxes(
        "acme", acme["web"], "killed"
    )
    response = client.delete(f"{BASE}/{acme['web']}", headers=acme[role].headers)
    assert response.status_code == 204
    assert response.data == b""
    assert listed(client, acme["owner"]) == ["api"]
    sandboxes = client.get(SANDBOXES, headers=acme["owner"].headers).json["sandboxes"]
    assert {s["id"] for s in sandboxes} == {str(i) for i in in_web}
    assert {s["project_id"] for s in sandboxes} == {None}
    # the former project's members keep seeing them: sandboxes without a project are public
    assert visible_sandboxes(client, acme["member"]) == {str(i) for i in in_web}
    facets = client.get(f"{SANDBOXES}/facets", headers=acme["owner"].headers).json
    assert facets == {
        "projects": [],
        "states": [{"count": 2, "value": "running"}, {"count": 1, "value": "killed"}],
    }
    again = client.delete(f"{BASE}/{acme['web']}", headers=acme[role].headers)
    assert_error(again, 404, "not_found_error")


# --- members --------------------------------------------------------------------------------


def test_adding_and_removing_a_member_changes_what_they_see(client, world, acme):
    owner = acme["owner"].headers
    newcomer = world.caller("acme", "member")
    (in_api,) = world.sandboxes("acme", acme["api"], "running")
    members = f"{BASE}/{acme['api']}/members"
    assert visible_sandboxes(client, newcomer) == set()
    response = client.post(members, json={"email": newcomer.email.upper()}, headers=owner)
    assert response.status_code == 204
    assert response.data == b""
    assert visible_sandboxes(client, newcomer) == {str(in_api)}
    assert listed(client, newcomer) == ["api"]
    assert client.post(members, json={"email": newcomer.email}, headers=owner).status_code == 204
    response = client.delete(f"{members}/{newcomer.user_id}", headers=owner)
    assert response.status_code == 204
    assert visible_sandboxes(client, newcomer) == set()
    again = client.delete(f"{members}/{newcomer.user_id}", headers=owner)
    assert_error(again, 404, "not_found_error")


def test_only_org_members_can_be_added(client, world, acme):
    members = f"{BASE}/{acme['api']}/members"
    owner = acme["owner"].headers
    for email in (acme["outsider"].email, "nobody@example.com"):
        response = client.post(members, json={"email": email}, headers=owner)
        assert_error(response, 404, "not_found_error")


@pytest.mark.parametrize(
    "body, field",
    [({}, "email"), ({"email": "not-an-email"}, "email"), ({"email": "a@b.co", "x": 1}, "x")],
)
def test_add_member_rejects_bad_bodies(client, acme, body, field):
    path = f"{BASE}/{acme['api']}/members"
    response = client.post(path, json=body, headers=acme["owner"].headers)
    body = assert_error(response, 422, "validation_error")
    assert [item["loc"] for item in body["errors"]] == [["json", field]]


def test_member_cannot_manage_members(client, acme):
    member = acme["member"]
    body = {"email": member.email}
    visible = client.post(f"{BASE}/{acme['web']}/members", json=body, headers=member.headers)
    assert_error(visible, 403, "forbidden_error")
    hidden = client.post(f"{BASE}/{acme['api']}/members", json=body, headers=member.headers)
    assert_error(hidden, 404, "not_found_error")
    leave = client.delete(f"{BASE}/{acme['web']}/members/{member.user_id}", headers=member.headers)
    assert_error(leave, 403, "forbidden_error")


def test_removing_a_non_member_is_not_found(client, acme):
    path = f"{BASE}/{acme['api']}/members/{acme['member'].user_id}"
    assert_error(client.delete(path, headers=acme["owner"].headers), 404, "not_found_error")


# --- OpenAPI --------------------------------------------------------------------------------

DOC = "/api/v1/org/{org}/projects"


@pytest.mark.parametrize(
    "path, method, statuses, body",
    [
        (DOC, "get", {"200", "401", "403", "404"}, None),
        (DOC, "post", {"201", "401", "403", "404", "409", "422"}, "ProjectCreate"),
        (f"{DOC}/{{project_id}}", "patch", {"200", "403", "404", "409", "422"}, "ProjectUpdate"),
        (f"{DOC}/{{project_id}}", "delete", {"204", "401", "403", "404"}, None),
        (f"{DOC}/{{project_id}}/members", "post", {"204", "403", "404", "422"}, "ProjectMemberAdd"),
        (f"{DOC}/{{project_id}}/members/{{user_id}}", "delete", {"204", "403", "404"}, None),
    ],
)
def test_endpoints_are_documented(client, path, method, statuses, body):
    operation = client.get("/openapi.json").json["paths"][path][method]
    assert statuses <= set(operation["responses"])
    assert operation["security"] == [{"bearerAuth": []}]
    if body is not None:
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + body)
