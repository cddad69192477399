"""Project names and counts of one version, even when writes land while a read is in flight."""

from __future__ import annotations

import threading

import pytest

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
    client.get(FACETS, headers=owner.headers)  # labels held at this version
    world.sandboxes("acme", web, "paused")

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
