"""Who sees what: roles, invisible project filters, unknown orgs, non-members, other orgs."""

from __future__ import annotations

import uuid

import pytest
from conftest import make_jwt

EMPTY = {"projects": [], "states": []}


def facets_path(org: str = "acme") -> str:
    return f"/api/v1/org/{org}/sandboxes/facets"


@pytest.fixture
def acme(world):
    """acme: web (running 2), api (paused 3), ops (killed 1), no project (running 1, killed 1).

    A member of web, a member of web and ops, a member of no project, an owner and an admin.
    """
    world.org("acme")
    web = world.project("acme", "web", "Web")
    api = world.project("acme", "api", "API")
    ops = world.project("acme", "ops", "Ops")
    world.sandboxes("acme", web, "running", 2)
    world.sandboxes("acme", api, "paused", 3)
    world.sandboxes("acme", ops, "killed", 1)
    world.sandboxes("acme", None, "running", 1)
    world.sandboxes("acme", None, "killed", 1)
    return {
        "web": web,
        "api": api,
        "ops": ops,
        "owner": world.caller("acme", "owner"),
        "admin": world.caller("acme", "admin"),
        "member_web": world.caller("acme", "member", projects_=[web]),
        "member_web_ops": world.caller("acme", "member", projects_=[web, ops]),
        "member_none": world.caller("acme", "member"),
    }


def entry(acme, name: str, count: int) -> dict:
    key, label = {"web": ("web", "Web"), "api": ("api", "API"), "ops": ("ops", "Ops")}[name]
    return {
        "project_id": str(acme[name]),
        "project_key": key,
        "project_name": label,
        "count": count,
    }


def assert_error(response, status: int, type_: str) -> None:
    assert response.status_code == status, response.json
    assert (response.json["code"], response.json["type"]) == (status, type_)


EVERY_STATE = [("paused", 3), ("running", 3), ("killed", 2)]
EVERY_PROJECT = [("api", 3), ("web", 2), ("ops", 1)]


@pytest.mark.parametrize(
    "who, expected_states, expected_projects",
    [
        ("owner", EVERY_STATE, EVERY_PROJECT),
        ("admin", EVERY_STATE, EVERY_PROJECT),
        ("member_web", [("running", 3), ("killed", 1)], [("web", 2)]),
        ("member_web_ops", [("running", 3), ("killed", 2)], [("web", 2), ("ops", 1)]),
        ("member_none", [("killed", 1), ("running", 1)], []),
    ],
)
def test_each_role_sees_its_sandboxes(client, acme, who, expected_states, expected_projects):
    response = client.get(facets_path(), headers=acme[who].headers)
    assert response.status_code == 200
    assert response.json == {
        "states": [{"value": v, "count": n} for v, n in expected_states],
        "projects": [entry(acme, name, n) for name, n in expected_projects],
    }


def test_member_sees_the_same_through_a_jwt(client, acme):
    member = acme["member_web"]
    by_key = client.get(facets_path(), headers=member.headers)
    by_jwt = client.get(
        facets_path(), headers={"Authorization": f"Bearer {make_jwt(member.user_id)}"}
    )
    assert by_jwt.status_code == 200
    assert by_jwt.json == by_key.json


@pytest.mark.parametrize(
    "who, project, expected",
    [
        ("member_web", "web", {"states": [{"value": "running", "count": 2}], "projects": ["web"]}),
        ("owner", "api", {"states": [{"value": "paused", "count": 3}], "projects": ["api"]}),
        ("admin", "ops", {"states": [{"value": "killed", "count": 1}], "projects": ["ops"]}),
    ],
)
def test_project_filter_on_a_visible_project(client, acme, who, project, expected):
    response = client.get(
        facets_path(), query_string={"project_id": acme[project]}, headers=acme[who].headers
    )
    assert response.status_code == 200
    assert response.json["states"] == expected["states"]
    assert [p["project_key"] for p in response.json["projects"]] == expected["projects"]


@pytest.fixture
def other_org_project(world):
    """A project of another org, with sandboxes in it."""
    world.org("globex")
    project = world.project("globex", "web", "Web")
    world.sandboxes("globex", project, "running", 4)
    return project


UNSEEN_PROJECT_CASES = [
    (who, target)
    for target in ("invisible", "nonexistent", "other_org")
    for who in ("member_web", "member_none", "owner", "admin")
    # owners and admins see every project of their org, so nothing of it is invisible to them
    if not (target == "invisible" and who in ("owner", "admin"))
]


@pytest.mark.parametrize("who, target", UNSEEN_PROJECT_CASES)
@pytest.mark.parametrize("extra", ["", "&state=running", "&state=paused,killed"])
def test_project_filter_that_cannot_be_seen_gives_empty_facets(
    client, acme, other_org_project, who, extra, target
):
    project_id = {
        "invisible": acme["api"],  # in acme, but its members do not include these callers
        "nonexistent": uuid.uuid4(),
        "other_org": other_org_project,
    }[target]
    response = client.get(
        f"{facets_path()}?project_id={project_id}{extra}", headers=acme[who].headers
    )
    assert response.status_code == 200
    assert response.json == EMPTY


def test_invisible_and_nonexistent_projects_answer_identically(client, acme):
    member = acme["member_web"]
    responses = [
        client.get(facets_path(), query_string={"project_id": pid}, headers=member.headers)
        for pid in (acme["api"], uuid.uuid4())
    ]
    assert [r.status_code for r in responses] == [200, 200]
    assert responses[0].get_data() == responses[1].get_data()


@pytest.mark.parametrize("who", ["owner", "member_web", "outsider"])
def test_unknown_org_is_404(client, world, acme, who):
    caller = world.caller(None) if who == "outsider" else acme[who]
    response = client.get(facets_path("no-such-org"), headers=caller.headers)
    assert_error(response, 404, "not_found_error")


@pytest.mark.parametrize("credential", ["api_key", "jwt"])
def test_authenticated_non_member_is_403(client, world, acme, credential):
    outsider = world.caller(None)
    token = outsider.key if credential == "api_key" else make_jwt(outsider.user_id)
    response = client.get(facets_path(), headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 403, "forbidden_error")


def test_jwt_for_a_user_that_does_not_exist_is_403(client, acme):
    response = client.get(
        facets_path(), headers={"Authorization": f"Bearer {make_jwt(uuid.uuid4())}"}
    )
    assert_error(response, 403, "forbidden_error")


def test_member_of_one_org_learns_nothing_about_another(client, world):
    world.org("acme")
    acme_web = world.project("acme", "web", "Web")
    world.sandboxes("acme", acme_web, "running", 1)
    member = world.caller("acme", "member", projects_=[acme_web])
    before = client.get(facets_path(), headers=member.headers).json

    world.org("globex")
    secret = world.project("globex", "web", "Secret Plans")
    world.sandboxes("globex", secret, "paused", 5)
    world.sandboxes("globex", None, "killed", 2)
    assert client.get(facets_path(), headers=member.headers).json == before

    denied = client.get(facets_path("globex"), headers=member.headers)
    assert_error(denied, 403, "forbidden_error")
    text = denied.get_data(as_text=True)
    for leak in (str(secret), "Secret Plans", "paused"):
        assert leak not in text

    by_secret = client.get(
        facets_path(), query_string={"project_id": secret}, headers=member.headers
    )
    by_random = client.get(
        facets_path(), query_string={"project_id": uuid.uuid4()}, headers=member.headers
    )
    assert by_secret.status_code == by_random.status_code == 200
    assert by_secret.json == by_random.json == EMPTY


def test_owner_of_one_org_is_a_stranger_in_another(client, world):
    world.org("acme")
    world.org("globex")
    world.sandboxes("globex", None, "running", 1)
    acme_owner = world.caller("acme", "owner")
    assert_error(
        client.get(facets_path("globex"), headers=acme_owner.headers), 403, "forbidden_error"
    )
    assert client.get(facets_path(), headers=acme_owner.headers).json == EMPTY


def test_project_membership_in_another_org_grants_nothing(client, runner, world):
    """A member of two orgs sees a globex project's sandboxes in globex only, never via acme."""
    world.org("acme")
    world.org("globex")
    globex_web = world.project("globex", "web", "Web")
    world.sandboxes("globex", globex_web, "running", 3)
    member = world.caller("acme", "member")
    added = runner.invoke(args=["members", "add", "globex", member.email, "--role", "member"])
    assert added.exit_code == 0, added.output
    world.add_project_member("globex", globex_web, member.email)

    in_globex = client.get(facets_path("globex"), headers=member.headers)
    assert in_globex.json["states"] == [{"value": "running", "count": 3}]
    via_acme = client.get(
        facets_path(), query_string={"project_id": globex_web}, headers=member.headers
    )
    assert via_acme.status_code == 200
    assert via_acme.json == EMPTY
    assert client.get(facets_path(), headers=member.headers).json == EMPTY
