"""The acme org of the facets-read tests: how it is built, its views, its mutations.

acme has projects web, api and ops, sandboxes in every state (some with no project), an owner
and a member of web. ``VIEWS`` are the facets reads the tests compare (and which cache read
serves each warm); ``MUTATIONS`` are one API call of every kind that changes facets, in an
order where each applies to what the previous ones left; ``commit_before_the_first_recount``
slips two commits in front of a cold read's recount. Used by ``test_warm_path``, ``test_etag``
and ``test_body_memo``; each declares its ``acme`` fixture with ``build``.
"""

from __future__ import annotations

import uuid

from conftest import served, statements
from sqlalchemy import select

from facets.counts import read as read_module
from facets.counts.cache import CounterCache
from facets.extensions import state
from models import Org
from models.services import projects as project_service
from models.services import sandboxes as sandbox_service
from models.services.common import lock_access

SLUG = "acme"


def build(world) -> dict:
    """acme: web, api, ops; sandboxes in every state; an owner and a member of web."""
    world.org(SLUG)
    web = world.project(SLUG, "web", "Web")
    api = world.project(SLUG, "api", "API")
    ops = world.project(SLUG, "ops", "Ops")
    world.sandboxes(SLUG, web, "running", 6)
    world.sandboxes(SLUG, web, "paused", 1)
    world.sandboxes(SLUG, api, "paused", 2)
    world.sandboxes(SLUG, ops, "killed", 2)
    world.sandboxes(SLUG, None, "running", 2)
    world.sandboxes(SLUG, None, "killed", 1)
    with world.app.app_context(), state().db.read_session() as session:
        org_id = session.scalar(select(Org.id).where(Org.slug == SLUG))
    return {
        "org_id": org_id,
        "web": web,
        "api": api,
        "ops": ops,
        "owner": world.caller(SLUG, "owner"),
        "member": world.caller(SLUG, "member", projects_=[web]),
    }


# (caller, query, which cache read serves it warm)
VIEWS = {
    "owner": ("owner", {}, "totals"),
    "owner_states": ("owner", {"state": "running,killed"}, "all cells"),
    "owner_project": ("owner", {"project_id": "web"}, "some cells"),
    "member": ("member", {}, "some cells"),
    "member_state": ("member", {"state": "paused"}, "some cells"),
}


def get(client, acme, view: str):
    """Fetch a view's facets; returns the response, the path that served it and its SQL."""
    who, query, _ = VIEWS[view]
    query = {k: str(acme[v]) if k == "project_id" else v for k, v in query.items()}
    before = served()
    with statements(client.application) as seen:
        response = client.get(
            f"/api/v1/org/{SLUG}/sandboxes/facets", query_string=query, headers=acme[who].headers
        )
    assert response.status_code == 200, response.json
    (path,) = (served() - before).elements()
    return response, path, seen


def drop_hashes(app, org_id: uuid.UUID) -> None:
    """Forget the org's hashes (only this org's keys: the real leg shares its Redis)."""
    with app.app_context():
        state().redis.delete(*CounterCache.keys(org_id))


def _create(client, acme):
    r = client.post(
        f"/api/v1/org/{SLUG}/sandboxes",
        json={"project_id": str(acme["api"]), "state": "paused"},
        headers=acme["owner"].headers,
    )
    assert r.status_code == 201, r.json
    acme["last_sandbox"] = r.json["id"]


def _sandbox_of(client, acme, project: str, state_: str) -> str:
    r = client.get(
        f"/api/v1/org/{SLUG}/sandboxes",
        query_string={"project_id": str(acme[project]), "state": state_},
        headers=acme["owner"].headers,
    )
    assert r.status_code == 200 and r.json["sandboxes"], r.json
    return r.json["sandboxes"][0]["id"]


def _patch_sandbox(client, acme, body_of):
    sandbox = _sandbox_of(client, acme, "web", "running")
    r = client.patch(
        f"/api/v1/org/{SLUG}/sandboxes/{sandbox}",
        json=body_of(acme),
        headers=acme["owner"].headers,
    )
    assert r.status_code == 200, r.json


def _delete_sandbox(client, acme):
    sandbox = _sandbox_of(client, acme, "web", "running")
    r = client.delete(f"/api/v1/org/{SLUG}/sandboxes/{sandbox}", headers=acme["owner"].headers)
    assert r.status_code == 204, r.json


def _project_call(method: str, suffix, body=None, status=200):
    def call(client, acme):
        url = f"/api/v1/org/{SLUG}/projects" + suffix(acme)
        r = client.open(url, method=method, json=body, headers=acme["owner"].headers)
        assert r.status_code == status, r.json

    return call


# In an order where each applies to what the previous ones left (web keeps running sandboxes).
MUTATIONS = {
    "create_sandbox": _create,
    "pause_sandbox": lambda c, a: _patch_sandbox(c, a, lambda _: {"state": "paused"}),
    "kill_sandbox": lambda c, a: _patch_sandbox(c, a, lambda _: {"state": "killed"}),
    "move_sandbox": lambda c, a: _patch_sandbox(c, a, lambda a: {"project_id": str(a["api"])}),
    "unassign_sandbox": lambda c, a: _patch_sandbox(c, a, lambda _: {"project_id": None}),
    "delete_sandbox": _delete_sandbox,
    "create_project": _project_call("POST", lambda a: "", {"key": "new", "name": "New"}, 201),
    "rename_project": _project_call("PATCH", lambda a: f"/{a['web']}", {"name": "Webby"}),
    "add_member": lambda c, a: _project_call(
        "POST", lambda a: f"/{a['api']}/members", {"email": a["member"].email}, 204
    )(c, a),
    "remove_member": _project_call(
        "DELETE", lambda a: f"/{a['web']}/members/{a['member'].user_id}", status=204
    ),
    "delete_project": _project_call("DELETE", lambda a: f"/{a['api']}", status=204),
}


def commit_before_the_first_recount(app, acme, monkeypatch) -> list[int]:
    """Make the read path's next recount run just after two commits: the member loses project
    web, then two sandboxes are created in web. The list returned is non-empty once it ran."""
    member, web = acme["member"], acme["web"]
    real_recount = read_module.recount_org
    raced: list[int] = []

    def recount_after_a_commit(db, org_id, **kwargs):
        if not raced:
            raced.append(1)
            with app.app_context():
                with state().unit_of_work() as uow:
                    access = lock_access(uow, org_slug=SLUG, user_id=acme["owner"].user_id)
                    project_service.remove_project_member(
                        uow, access=access, project_id=web, user_id=member.user_id
                    )
                with state().unit_of_work() as uow:
                    access = lock_access(uow, org_slug=SLUG, user_id=acme["owner"].user_id)
                    for _ in range(2):
                        sandbox_service.create_sandbox(uow, access=access, project_id=web)
        return real_recount(db, org_id, **kwargs)

    monkeypatch.setattr(read_module, "recount_org", recount_after_a_commit)
    return raced
