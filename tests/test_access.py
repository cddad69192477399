"""Who sees what: the access statements resolve role and visible projects per org, on both legs.

One user belongs to two orgs, with project memberships in each; every way of reading access
(the request path's by user or by API key, and the unit of work's) must give each org only its
own projects.
"""

from __future__ import annotations

import threading

import pytest
from conftest import statements
from sqlalchemy import text

from facets.extensions import state
from models import Forbidden, NotFound
from models.access import load_access, read_access, read_key_access
from models.org import Role
from models.services import accounts


@pytest.fixture
def two_orgs(world):
    """A user who is a plain member of acme (project web) and of globex (project g1), and
    the owner of initech; plus acme's owner. Every org has projects the user is not in."""
    for slug in ("acme", "globex", "initech"):
        world.org(slug)
    web = world.project("acme", "web")
    world.project("acme", "api")
    g1 = world.project("globex", "g1")
    world.project("globex", "g2")
    world.project("initech", "i1")
    user = world.caller("acme", "member", projects_=[web])
    with world.app.app_context(), state().unit_of_work() as uow:
        accounts.add_member(uow, org_slug="globex", email=user.email, role=Role.MEMBER)
        accounts.add_member(uow, org_slug="initech", email=user.email, role=Role.OWNER)
    world.add_project_member("globex", g1, user.email)
    owner = world.caller("acme", "owner")
    return {"user": user, "owner": owner, "web": web, "g1": g1}


def every_read(app, caller, org_slug: str):
    """The caller's access to ``org_slug`` read each way, or the error each raised."""
    outcomes = []
    with app.app_context():
        db = state().db
        for read in (
            lambda: read_access(db, org_slug, caller.user_id),
            lambda: read_key_access(db, org_slug, caller.key[: accounts.API_KEY_PREFIX_LEN]).access,
            lambda: _in_session(db, org_slug, caller.user_id),
        ):
            try:
                outcomes.append(read())
            except (NotFound, Forbidden) as error:
                outcomes.append(error)
    return outcomes


def _in_session(db, org_slug, user_id):
    with db.read_session() as session:
        return load_access(session, org_slug, user_id)


@pytest.mark.parametrize(
    ("org", "role", "projects"),
    [
        ("acme", Role.MEMBER, {"web"}),
        ("globex", Role.MEMBER, {"g1"}),
        ("initech", Role.OWNER, None),
    ],
)
def test_a_member_sees_only_this_orgs_projects_of_their_own(app, two_orgs, org, role, projects):
    expected = None if projects is None else frozenset(two_orgs[p] for p in projects)
    for access in every_read(app, two_orgs["user"], org):
        assert access.role == role
        assert access.project_ids == expected
        assert access.org_slug == org


def test_an_owner_sees_every_project_whatever_their_project_memberships(app, world, two_orgs):
    world.add_project_member("acme", two_orgs["web"], two_orgs["owner"].email)
    for access in every_read(app, two_orgs["owner"], "acme"):
        assert access.role == Role.OWNER
        assert access.project_ids is None


def test_project_memberships_in_another_org_give_nothing_here(app, world, two_orgs):
    lone = world.caller("acme", "member")
    with app.app_context(), state().unit_of_work() as uow:
        accounts.add_member(uow, org_slug="globex", email=lone.email, role=Role.MEMBER)
    world.add_project_member("globex", two_orgs["g1"], lone.email)
    for access in every_read(app, lone, "acme"):
        assert access.role == Role.MEMBER
        assert access.project_ids == frozenset()
    for access in every_read(app, lone, "globex"):
        assert access.project_ids == frozenset({two_orgs["g1"]})


def test_outsiders_and_unknown_orgs_are_refused_every_way(app, world, two_orgs):
    outsider = world.caller()
    assert all(isinstance(e, Forbidden) for e in every_read(app, outsider, "acme"))
    assert all(isinstance(e, NotFound) for e in every_read(app, two_orgs["user"], "nope"))


@pytest.mark.parametrize("slug", ["acme\x00", "\x00", "Acme", "-acme", "acme\n", "a" * 64])
def test_a_slug_no_org_can_have_is_not_found_every_way_without_asking_for_the_org(
    app, two_orgs, slug
):
    """PostgreSQL refuses NUL in text: such a slug must be answered, not sent to the database."""
    with statements(app) as seen:
        outcomes = every_read(app, two_orgs["user"], slug)
    assert all(isinstance(e, NotFound) for e in outcomes), outcomes
    assert not [s for s in seen if "orgs" in s], seen


@pytest.mark.leg("real")  # SQLite has no row locks: every writer queues for the whole file
def test_an_outsider_is_refused_without_queueing_for_the_org_lock(app, world, two_orgs):
    """A write by someone who is not a member answers 403 at once, even while one of the
    org's writers holds its lock; a member's write waits for it, as it must."""
    outsider = world.caller()
    url = "/api/v1/org/acme/sandboxes"
    with app.app_context():
        engine = state().db.engine
    finished: dict[str, int] = {}

    def post(name: str, caller) -> None:
        finished[name] = app.test_client().post(url, json={}, headers=caller.headers).status_code

    with engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT 1 FROM orgs WHERE slug = 'acme' FOR UPDATE"))
        writers = {
            "outsider": threading.Thread(target=post, args=("outsider", outsider)),
            "owner": threading.Thread(target=post, args=("owner", two_orgs["owner"])),
        }
        for writer in writers.values():
            writer.start()
        writers["outsider"].join(timeout=10)
        assert finished == {"outsider": 403}  # the owner still waits for the lock
    writers["owner"].join(timeout=10)
    assert finished == {"outsider": 403, "owner": 201}
