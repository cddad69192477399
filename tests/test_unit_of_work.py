"""The unit of work seen through the API: after-commit hooks get exactly the recorded events."""

from __future__ import annotations

import uuid

import pytest

from facets.extensions import state
from models import events
from models.services import sandboxes
from models.services.common import lock_access

SANDBOXES = "/api/v1/org/acme/sandboxes"
PROJECTS = "/api/v1/org/acme/projects"


class Recorder:
    """An after-commit hook that keeps every commit it is given."""

    def __init__(self) -> None:
        self.commits = []

    def __call__(self, commits) -> None:
        self.commits.extend(commits)

    def take(self) -> list[events.Event]:
        """The events seen since the last call, in commit order."""
        taken = [event for commit in self.commits for event in commit.events]
        self.commits.clear()
        return taken


@pytest.fixture
def acme(world):
    world.org("acme")
    return {"web": world.project("acme", "web"), "owner": world.caller("acme", "owner")}


@pytest.fixture
def recorder(app) -> Recorder:
    hook = Recorder()
    with app.app_context():
        state().hooks.register(hook)
    return hook


def test_sandbox_writes_record_what_the_rows_had(client, acme, recorder):
    owner, web = acme["owner"].headers, acme["web"]
    created = client.post(SANDBOXES, json={"project_id": str(web)}, headers=owner).json
    org_id = recorder.commits[0].org_id
    sid = uuid.UUID(created["id"])
    path = f"{SANDBOXES}/{sid}"
    assert [(type(e), e.state, e.project_id) for e in recorder.take()] == [
        (events.SandboxCreated, "running", web)
    ]

    client.patch(path, json={"state": "paused", "project_id": str(web)}, headers=owner)
    assert recorder.take() == [events.SandboxStateChanged(org_id, sid, web, "running", "paused")]

    client.patch(path, json={"state": "killed", "project_id": None}, headers=owner)
    assert recorder.take() == [
        events.SandboxStateChanged(org_id, sid, web, "paused", "killed"),
        events.SandboxMoved(org_id, sid, "killed", web, None),
    ]

    client.delete(path, headers=owner)
    assert recorder.take() == [events.SandboxDeleted(org_id, sid, "killed", None)]


@pytest.mark.parametrize("body", [{"state": "running"}, {}, {"project_id": None}])
def test_a_patch_that_changes_nothing_records_nothing(client, world, acme, recorder, body):
    (sandbox,) = world.sandboxes("acme", None, "running")
    recorder.take()
    response = client.patch(f"{SANDBOXES}/{sandbox}", json=body, headers=acme["owner"].headers)
    assert response.status_code == 200
    assert recorder.commits == []


def test_failed_requests_record_nothing(client, world, acme, recorder):
    owner = acme["owner"].headers
    (killed,) = world.sandboxes("acme", None, "killed")
    (gone,) = world.sandboxes("acme", None, "running")
    client.delete(f"{SANDBOXES}/{gone}", headers=owner)
    recorder.take()
    response = client.patch(f"{SANDBOXES}/{killed}", json={"state": "paused"}, headers=owner)
    assert response.status_code == 409
    assert client.delete(f"{SANDBOXES}/{gone}", headers=owner).status_code == 404
    assert client.post(PROJECTS, json={"key": "web", "name": "x"}, headers=owner).status_code == 409
    assert recorder.commits == []


def test_project_writes_record_their_events(client, world, acme, recorder):
    owner = acme["owner"].headers
    project = client.post(PROJECTS, json={"key": "ml", "name": "ML"}, headers=owner).json
    pid = uuid.UUID(project["id"])
    (created,) = recorder.take()
    assert (type(created), created.project_id, created.key, created.name) == (
        events.ProjectCreated,
        pid,
        "ml",
        "ML",
    )

    client.patch(f"{PROJECTS}/{pid}", json={"name": "Machine learning"}, headers=owner)
    (renamed,) = recorder.take()
    assert (renamed.old_key, renamed.old_name, renamed.key, renamed.name) == (
        "ml",
        "ML",
        "ml",
        "Machine learning",
    )
    client.patch(f"{PROJECTS}/{pid}", json={"name": "Machine learning"}, headers=owner)
    assert recorder.take() == []

    member = world.caller("acme", "member")
    recorder.take()
    members = f"{PROJECTS}/{pid}/members"
    client.post(members, json={"email": member.email}, headers=owner)
    client.post(members, json={"email": member.email}, headers=owner)
    client.delete(f"{members}/{member.user_id}", headers=owner)
    assert [(type(e), e.user_id, e.added) for e in recorder.take()] == [
        (events.ProjectMembershipChanged, member.user_id, True),
        (events.ProjectMembershipChanged, member.user_id, False),
    ]

    world.sandboxes("acme", pid, "running", 2)
    world.sandboxes("acme", pid, "killed", 1)
    recorder.take()
    client.delete(f"{PROJECTS}/{pid}", headers=owner)
    (deleted,) = recorder.take()
    assert (type(deleted), deleted.project_id, deleted.moved) == (
        events.ProjectDeleted,
        pid,
        {"running": 2, "killed": 1},
    )


def test_each_commit_bumps_the_org_version_by_one(client, acme, recorder):
    owner = acme["owner"].headers
    for _ in range(3):
        client.post(SANDBOXES, json={}, headers=owner)
    versions = [commit.version for commit in recorder.commits]
    assert versions == list(range(versions[0], versions[0] + 3))


def test_a_rollback_runs_no_hook_and_keeps_nothing(app, client, acme, recorder):
    class Boom(Exception):
        pass

    with app.app_context(), pytest.raises(Boom):
        with state().unit_of_work() as uow:
            access = lock_access(uow, org_slug="acme", user_id=acme["owner"].user_id)
            sandboxes.create_sandbox(uow, access=access)
            raise Boom
    assert recorder.commits == []
    listed = client.get(SANDBOXES, headers=acme["owner"].headers).json["sandboxes"]
    assert listed == []


def test_a_failing_hook_does_not_fail_a_committed_request(app, client, acme, recorder):
    def broken(commits):
        raise RuntimeError("hook down")

    with app.app_context():
        hooks = state().hooks
        hooks.register(broken)
        hooks.register(after := Recorder())
        failures = hooks.failures
    response = client.post(SANDBOXES, json={"state": "paused"}, headers=acme["owner"].headers)
    assert response.status_code == 201
    assert hooks.failures == failures + 1
    assert len(after.take()) == 1  # hooks after the broken one still run
    listed = client.get(SANDBOXES, headers=acme["owner"].headers).json["sandboxes"]
    assert [s["id"] for s in listed] == [response.json["id"]]
