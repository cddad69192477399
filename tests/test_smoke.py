"""Smoke: the facets endpoint answers on every leg."""

FACETS = "/api/v1/org/acme/sandboxes/facets"


def test_owner_sees_counts_by_state_and_project(client, world):
    world.org("acme")
    owner = world.caller("acme", "owner")
    web = world.project("acme", "web", "Web")
    world.sandboxes("acme", web, "running", 3)
    world.sandboxes("acme", None, "paused", 1)
    response = client.get(FACETS, headers=owner.headers)
    assert response.status_code == 200
    assert response.json == {
        "projects": [
            {"count": 3, "project_id": str(web), "project_key": "web", "project_name": "Web"}
        ],
        "states": [{"count": 3, "value": "running"}, {"count": 1, "value": "paused"}],
    }
