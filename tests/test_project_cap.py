"""At most ``MAX_PROJECTS_PER_ORG`` projects per org, however many creates race for the last."""

from __future__ import annotations

import threading

import pytest
from conftest import TEST_DATABASE_URL, World

PROJECTS = "/api/v1/org/acme/projects"


@pytest.fixture
def capped(make_app):
    return make_app(MAX_PROJECTS_PER_ORG=3, ORG_WRITES_IN_FLIGHT=8)  # the racers all get in


@pytest.fixture
def owner(capped):
    world = World(capped)
    world.org("acme")
    return world.caller("acme", "owner")


def create(app, owner, key: str):
    return app.test_client().post(PROJECTS, json={"key": key, "name": key}, headers=owner.headers)


def test_the_create_past_the_cap_is_refused_saying_the_limit(capped, owner):
    for key in ("a", "b", "c"):
        assert create(capped, owner, key).status_code == 201
    refused = create(capped, owner, "d")
    assert refused.status_code == 409, refused.json
    assert refused.json["type"] == "conflict_error"
    assert refused.json["code"] == 409
    assert "at most 3" in refused.json["detail"]
    listed = capped.test_client().get(PROJECTS, headers=owner.headers).json["projects"]
    assert sorted(p["key"] for p in listed) == ["a", "b", "c"]
    a = next(p["id"] for p in listed if p["key"] == "a")
    assert capped.test_client().delete(f"{PROJECTS}/{a}", headers=owner.headers).status_code == 204
    assert create(capped, owner, "d").status_code == 201


def test_the_default_cap_is_a_thousand(app):
    assert app.config["MAX_PROJECTS_PER_ORG"] == 1000


@pytest.mark.leg("real")
@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_concurrent_creates_cannot_pass_the_cap_together(capped, owner):
    """Creates racing for the last place: the count is taken under the org lock, so one wins."""
    assert create(capped, owner, "a").status_code == 201
    assert create(capped, owner, "b").status_code == 201
    statuses = []
    start = threading.Barrier(6)

    def racer(key: str) -> None:
        start.wait()
        statuses.append(create(capped, owner, key).status_code)

    threads = [threading.Thread(target=racer, args=(f"r{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [409] * 5
    listed = capped.test_client().get(PROJECTS, headers=owner.headers).json["projects"]
    assert len(listed) == 3
