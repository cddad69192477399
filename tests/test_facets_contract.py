"""The facets endpoint's contract: filter forms, validation, narrowing, buckets and ordering."""

from __future__ import annotations

import uuid

import pytest

FACETS = "/api/v1/org/acme/sandboxes/facets"
EMPTY = {"projects": [], "states": []}


@pytest.fixture
def acme(world):
    """An org whose counts tell every filter apart.

    web: running 3, paused 1; api: paused 2, killed 1; no project: running 1, killed 2.
    """
    world.org("acme")
    web = world.project("acme", "web", "Web")
    api = world.project("acme", "api", "API")
    world.sandboxes("acme", web, "running", 3)
    world.sandboxes("acme", web, "paused", 1)
    world.sandboxes("acme", api, "paused", 2)
    world.sandboxes("acme", api, "killed", 1)
    world.sandboxes("acme", None, "running", 1)
    world.sandboxes("acme", None, "killed", 2)
    return {"web": web, "api": api, "owner": world.caller("acme", "owner")}


def get_facets(client, caller, query: str = "", org: str = "acme"):
    path = f"/api/v1/org/{org}/sandboxes/facets"
    return client.get(f"{path}?{query}" if query else path, headers=caller.headers)


def states(*pairs) -> list[dict]:
    return [{"value": value, "count": count} for value, count in pairs]


def projects(acme, *pairs) -> list[dict]:
    labels = {"web": ("web", "Web"), "api": ("api", "API")}
    return [
        {
            "project_id": str(acme[name]),
            "project_key": labels[name][0],
            "project_name": labels[name][1],
            "count": count,
        }
        for name, count in pairs
    ]


UNFILTERED = ((("running", 4), ("killed", 3), ("paused", 3)), (("web", 4), ("api", 3)))
RUNNING_PAUSED = ((("running", 4), ("paused", 3)), (("web", 4), ("api", 2)))


@pytest.mark.parametrize(
    "query, expected",
    [
        pytest.param("", UNFILTERED, id="no-filter"),
        pytest.param("state=", UNFILTERED, id="state-empty-alone"),
        pytest.param("state=&state=,,", UNFILTERED, id="only-empty-items"),
        pytest.param("state=running&state=paused", RUNNING_PAUSED, id="repeated"),
        pytest.param("state=running,paused", RUNNING_PAUSED, id="comma-separated"),
        pytest.param("state=paused,running", RUNNING_PAUSED, id="comma-other-order"),
        pytest.param("state=running%2Cpaused", RUNNING_PAUSED, id="encoded-comma"),
        pytest.param("state=running,paused&state=running", RUNNING_PAUSED, id="mixed-duplicate"),
        pytest.param(
            "state=running&state=running,running",
            ((("running", 4),), (("web", 3),)),
            id="duplicates",
        ),
        pytest.param(
            "state=,running,,&state=", ((("running", 4),), (("web", 3),)), id="empty-items"
        ),
        pytest.param("state=killed&state=paused,running", UNFILTERED, id="mixed-all"),
        pytest.param(
            "state=killed&foo=bar&limit=x&projectId=zz",
            ((("killed", 3),), (("api", 1),)),
            id="unknown-params-ignored",
        ),
    ],
)
def test_state_filter_forms(client, acme, query, expected):
    response = get_facets(client, acme["owner"], query)
    assert response.status_code == 200, response.json
    expected_states, expected_projects = expected
    assert response.json == {
        "states": states(*expected_states),
        "projects": projects(acme, *expected_projects),
    }


@pytest.mark.parametrize(
    "query",
    [
        "state=Running",
        "state=RUNNING",
        "state=running,Paused",
        "state=running&state=KILLED",
        "state=stopped",
        "state=running,,bogus",
        "state=running&state=running paused",
        "state=all",
    ],
)
def test_unknown_or_wrong_case_state_is_422_naming_allowed_values(client, acme, query):
    response = get_facets(client, acme["owner"], query)
    assert response.status_code == 422
    body = response.json
    assert body["code"] == 422
    assert body["type"] == "validation_error"
    assert isinstance(body["detail"], str) and body["detail"]
    items = [item for item in body["errors"] if item["loc"] == ["query", "state"]]
    assert items, body
    for item in items:
        assert set(item) == {"loc", "msg", "type"}
        assert isinstance(item["type"], str) and item["type"]
        for allowed in ("running", "paused", "killed"):
            assert allowed in item["msg"]


@pytest.mark.parametrize(
    "value", ["nope", "123", "not-a-uuid-at-all", "0000", str(uuid.uuid4())[:-1], "'; drop"]
)
def test_project_id_that_is_not_a_uuid_is_422(client, acme, value):
    response = client.get(FACETS, query_string={"project_id": value}, headers=acme["owner"].headers)
    assert response.status_code == 422
    body = response.json
    assert (body["code"], body["type"]) == (422, "validation_error")
    locs = [item["loc"] for item in body["errors"]]
    assert ["query", "project_id"] in locs
    assert all(loc[:1] == ["query"] for loc in locs)


def test_both_bad_filters_are_reported_together(client, acme):
    response = get_facets(client, acme["owner"], "state=Nope&project_id=nope")
    assert response.status_code == 422
    locs = sorted(item["loc"] for item in response.json["errors"])
    assert locs == [["query", "project_id"], ["query", "state"]]


@pytest.mark.parametrize(
    "query, expected_states, expected_projects",
    [
        ("project_id={api}", (("paused", 2), ("killed", 1)), (("api", 3),)),
        ("project_id={web}", (("running", 3), ("paused", 1)), (("web", 4),)),
        ("project_id={api}&state=killed", (("killed", 1),), (("api", 1),)),
        ("project_id={web}&state=paused,killed", (("paused", 1),), (("web", 1),)),
        ("state=killed", (("killed", 3),), (("api", 1),)),
        ("state=running", (("running", 4),), (("web", 3),)),
    ],
)
def test_every_filter_narrows_both_facets(client, acme, query, expected_states, expected_projects):
    query = query.format(api=acme["api"], web=acme["web"])
    response = get_facets(client, acme["owner"], query)
    assert response.status_code == 200
    assert response.json == {
        "states": states(*expected_states),
        "projects": projects(acme, *expected_projects),
    }


@pytest.mark.parametrize(
    "query", ["project_id={web}&state=killed", "project_id={api}&state=running"]
)
def test_filters_that_select_nothing_give_empty_lists(client, acme, query):
    response = get_facets(client, acme["owner"], query.format(**acme))
    assert response.status_code == 200
    assert response.json == EMPTY


def test_zero_buckets_are_omitted(client, world):
    world.org("acme")
    owner = world.caller("acme", "owner")
    world.project("acme", "empty", "Empty")  # a project with no sandboxes
    gone = world.project("acme", "gone", "Gone")
    world.sandboxes("acme", gone, "killed", 1)
    world.sandboxes("acme", None, "paused", 2)
    response = get_facets(client, owner)
    assert response.json == {
        "states": states(("paused", 2), ("killed", 1)),
        "projects": [
            {"project_id": str(gone), "project_key": "gone", "project_name": "Gone", "count": 1}
        ],
    }


def test_empty_org_has_empty_facets(client, world):
    world.org("acme")
    assert get_facets(client, world.caller("acme", "owner")).json == EMPTY


def test_sandboxes_without_a_project_count_in_states_but_never_in_projects(client, world):
    world.org("acme")
    owner = world.caller("acme", "owner")
    world.sandboxes("acme", None, "running", 2)
    world.sandboxes("acme", None, "paused", 1)
    assert get_facets(client, owner).json == {
        "states": states(("running", 2), ("paused", 1)),
        "projects": [],
    }
    # and a project filter leaves them out of both facets
    web = world.project("acme", "web", "Web")
    world.sandboxes("acme", web, "killed", 1)
    assert get_facets(client, owner, f"project_id={web}").json == {
        "states": states(("killed", 1)),
        "projects": [
            {"project_id": str(web), "project_key": "web", "project_name": "Web", "count": 1}
        ],
    }


def test_states_tie_break_by_value_ascending(client, world):
    world.org("acme")
    owner = world.caller("acme", "owner")
    for state in ("running", "paused", "killed"):
        world.sandboxes("acme", None, state, 2)
    world.sandboxes("acme", None, "running", 1)
    assert get_facets(client, owner).json["states"] == states(
        ("running", 3), ("killed", 2), ("paused", 2)
    )


def test_projects_order_by_count_then_name_case_insensitively_then_key(client, world):
    world.org("acme")
    owner = world.caller("acme", "owner")
    # (key, name, sandboxes); a case-sensitive name sort would put "Zeta" before "alpha"
    spec = [
        ("zz", "Alpha", 1),
        ("b1", "beta", 1),
        ("a0", "Zeta", 1),
        ("mm", "ALPHA", 1),
        ("aa", "alpha", 1),
        ("Q", "alpha", 1),
        ("top", "zzz", 2),
    ]
    ids = {}
    for key, name, n in spec:
        ids[key] = world.project("acme", key, name)
        world.sandboxes("acme", ids[key], "running", n)
    body = get_facets(client, owner).json
    assert [(p["project_key"], p["count"]) for p in body["projects"]] == [
        ("top", 2),
        ("Q", 1),  # "alpha" names tie: keys compare as strings, "Q" < "aa" < "mm" < "zz"
        ("aa", 1),
        ("mm", 1),
        ("zz", 1),
        ("b1", 1),
        ("a0", 1),
    ]
    assert all(p["project_id"] == str(ids[p["project_key"]]) for p in body["projects"])
