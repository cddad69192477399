"""Project names and counts of one version, even when writes land while a read is in flight."""

from __future__ import annotations

import threading

import pytest
from conftest import statements

from facets.counts.labels import ProjectLabels
from facets.counts.read import LABEL_REREADS

FACETS = "/api/v1/org/acme/sandboxes/facets"


@pytest.fixture
def acme(world):
    """``web`` with 3 running sandboxes, ``api`` with 1, one paused in ``web``; the owner."""
    world.org("acme")
    owner = world.caller("acme", "owner")
    web = world.project("acme", "web", "Web")
    api = world.project("acme", "api", "API")
    world.sandboxes("acme", web, n=3)
    world.sandboxes("acme", api)
    return owner, web, api


def overtake_reads(monkeypatch, writes_per_read: list) -> None:
    """Commit ``writes_per_read[i]`` (in another thread, as another request would) when the
    i-th label lookup starts: after that read has its counts, before it has its labels."""
    real_get = ProjectLabels.get
    pending = list(writes_per_read)

    def overtaken(self, org_id, version):
        if pending:
            writer = threading.Thread(target=pending.pop(0))
            writer.start()
            writer.join()
        return real_get(self, org_id, version)

    monkeypatch.setattr(ProjectLabels, "get", overtaken)


def projects_and_states(response) -> tuple[list, list]:
    body = response.json
    projects = [(p["project_key"], p["project_name"], p["count"]) for p in body["projects"]]
    return projects, [(s["value"], s["count"]) for s in body["states"]]


def test_a_read_overtaken_by_a_delete_answers_the_newer_version_whole(
    app, client, world, acme, monkeypatch
):
    owner, web, api = acme
    client.get(FACETS, headers=owner.headers)  # labels held at this labels version
    world.sandboxes("acme", web, "paused")
    world.project("acme", "ml")  # a newer labels version: the next read loads labels

    def add_then_delete():
        world.sandboxes("acme", api)
        response = app.test_client().delete(
            f"/api/v1/org/acme/projects/{web}", headers=owner.headers
        )
        assert response.status_code == 204

    overtake_reads(monkeypatch, [add_then_delete])
    response = client.get(f"{FACETS}?state=running", headers=owner.headers)
    # web's sandboxes stay, with no project; its bucket goes with the project
    assert projects_and_states(response) == ([("api", "API", 2)], [("running", 5)])
    newest = client.get(f"{FACETS}?state=running", headers=owner.headers)
    assert response.headers["X-Facets-Version"] == newest.headers["X-Facets-Version"]
    assert response.headers["ETag"] == newest.headers["ETag"]


def test_a_read_overtaken_by_a_rename_carries_the_names_of_its_counts(
    app, client, world, acme, monkeypatch
):
    owner, web, api = acme
    client.get(FACETS, headers=owner.headers)
    world.sandboxes("acme", api, "paused")
    world.project("acme", "ml")

    def add_then_rename():
        world.sandboxes("acme", web)
        response = app.test_client().patch(
            f"/api/v1/org/acme/projects/{web}", json={"name": "Website"}, headers=owner.headers
        )
        assert response.status_code == 200

    overtake_reads(monkeypatch, [add_then_rename])
    response = client.get(f"{FACETS}?state=running", headers=owner.headers)
    assert projects_and_states(response) == (
        [("web", "Website", 4), ("api", "API", 1)],
        [("running", 5)],
    )


def test_rereads_are_bounded_however_often_labels_come_out_newer(client, world, acme, monkeypatch):
    """A view is read at most 1 + LABEL_REREADS times, whatever the write rate."""
    owner, web, _ = acme
    world.sandboxes("acme", web, "paused")
    lookups = []
    real_get = ProjectLabels.get

    def always_newer(self, org_id, version):
        lookups.append(version)
        _, labels = real_get(self, org_id, version)
        return version + 1, labels

    monkeypatch.setattr(ProjectLabels, "get", always_newer)
    response = client.get(f"{FACETS}?state=running", headers=owner.headers)
    assert response.status_code == 200
    assert len(lookups) == 1 + LABEL_REREADS


def project_queries(seen: list[str]) -> list[str]:
    """The statements that read projects' labels (the access statement joins projects for
    their ids only)."""
    return [s for s in seen if "projects.name" in s.lower()]


def test_a_sandbox_write_does_not_reload_labels(app, client, world, acme):
    """Labels are cached per labels version, which only project writes bump."""
    owner, web, _ = acme
    client.get(FACETS, headers=owner.headers)
    created = client.post(
        "/api/v1/org/acme/sandboxes", json={"project_id": str(web)}, headers=owner.headers
    )
    assert created.status_code == 201
    with statements(app) as seen:
        response = client.get(FACETS, headers=owner.headers)
    assert response.status_code == 200
    assert ("web", "Web", 4) in projects_and_states(response)[0]
    assert project_queries(seen) == [], seen


@pytest.mark.parametrize("change", ["create", "rename", "delete"])
def test_a_project_write_reloads_labels(app, client, world, acme, change):
    owner, web, _ = acme
    client.get(FACETS, headers=owner.headers)
    projects = "/api/v1/org/acme/projects"
    if change == "create":
        response = client.post(projects, json={"key": "ml", "name": "ML"}, headers=owner.headers)
    elif change == "rename":
        response = client.patch(
            f"{projects}/{web}", json={"name": "Website"}, headers=owner.headers
        )
    else:
        response = client.delete(f"{projects}/{web}", headers=owner.headers)
    assert response.status_code in (200, 201, 204), response.json
    with statements(app) as seen:
        read = client.get(FACETS, headers=owner.headers)
    assert project_queries(seen) != []
    names = {key: name for key, name, _ in projects_and_states(read)[0]}
    expected = {
        "create": {"web": "Web", "api": "API"},  # ml has no sandboxes: not listed
        "rename": {"web": "Website", "api": "API"},
    }
    assert names == expected.get(change, {"api": "API"})


def test_a_read_whose_labels_are_held_answers_its_own_version_whole(
    app, client, world, acme, monkeypatch
):
    """A project delete overtaking a read whose labels are cached at its labels version: the
    answer is the read's own (older) version, counts and names alike."""
    owner, web, api = acme
    client.get(FACETS, headers=owner.headers)
    world.sandboxes("acme", web, "paused")

    def delete_web():
        response = app.test_client().delete(
            f"/api/v1/org/acme/projects/{web}", headers=owner.headers
        )
        assert response.status_code == 204

    overtake_reads(monkeypatch, [delete_web])
    response = client.get(f"{FACETS}?state=running", headers=owner.headers)
    assert projects_and_states(response) == (
        [("web", "Web", 3), ("api", "API", 1)],
        [("running", 4)],
    )
