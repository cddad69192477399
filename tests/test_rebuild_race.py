"""A rebuild racing mutations, pinned with barriers: the final cache always equals SQL.

The rebuild's recount is taken, then mutations commit before its install; their deltas reach
Redis before the install, after it, out of order and twice.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from facets.cli import passes
from facets.extensions import state
from models import Org
from models.services import sandboxes as sandbox_service
from models.services.common import lock_access

TIMEOUT_S = 30


@pytest.fixture
def app_config(app_config):
    """The body memo off: every read reaches the Redis layer, which is under test."""
    return {**app_config, "FACETS_BODY_MEMO_BYTES": 0}


def facets(client, caller, slug):
    response = client.get(f"/api/v1/org/{slug}/sandboxes/facets", headers=caller.headers)
    assert response.status_code == 200
    return response.json


@pytest.mark.parametrize("warm_before", [True, False], ids=["warm", "cold"])
@pytest.mark.parametrize("deliver", ["before_install", "after_install"])
def test_rebuild_racing_mutations_converges_to_sql(
    app, client, runner, world, warm_before, deliver
):
    world.org("race")
    owner = world.caller("race", "owner")
    web = world.project("race", "web")
    running = world.sandboxes("race", web, "running", 3)
    world.sandboxes("race", None, "paused", 2)
    if warm_before:
        facets(client, owner, "race")

    with app.app_context():
        cache = state().cache
        hooks = state().hooks
    held = []
    recounted, mutated = (
        threading.Barrier(2, timeout=TIMEOUT_S),
        threading.Barrier(2, timeout=TIMEOUT_S),
    )
    real_install = passes.run_orgs  # the rebuild's pipelined read and install

    def install_after_mutations(*args, **kwargs):
        recounted.wait()  # the recount snapshot is taken
        mutated.wait()  # newer commits exist now
        return real_install(*args, **kwargs)

    passes.run_orgs = install_after_mutations
    result = {}
    rebuild = threading.Thread(
        target=lambda: result.update(out=runner.invoke(args=["facets", "rebuild", "--org", "race"]))
    )
    rebuild.start()
    try:
        recounted.wait()
        hooks.hooks[:] = [held.extend]
        with app.app_context():
            with state().unit_of_work() as uow:
                access = lock_access(uow, org_slug="race", user_id=owner.user_id)
                sandbox_service.update_sandbox(
                    uow, access=access, sandbox_id=running[0], state="paused"
                )
            with state().unit_of_work() as uow:
                access = lock_access(uow, org_slug="race", user_id=owner.user_id)
                sandbox_service.delete_sandbox(uow, access=access, sandbox_id=running[1])
                sandbox_service.create_sandbox(uow, access=access, project_id=web)
            if deliver == "before_install":
                for commit in reversed(held):
                    cache.after_commit([commit])
        mutated.wait()
        rebuild.join(TIMEOUT_S)
    finally:
        passes.run_orgs = real_install
        hooks.hooks[:] = [cache.after_commit]
    assert result["out"].exit_code == 0, result["out"].output
    with app.app_context():
        for commit in [*reversed(held), *held]:  # late, out of order, and twice
            cache.after_commit([commit])

    verify = runner.invoke(args=["facets", "verify", "--org", "race"])
    assert verify.exit_code == 0, verify.output
    assert facets(client, owner, "race")["states"] == [
        {"count": 3, "value": "paused"},
        {"count": 2, "value": "running"},
    ]
    with app.app_context(), state().db.read_session() as session:
        cells, _ = cache.snapshot(session.scalar(select(Org.id).where(Org.slug == "race")))
    assert cells is not None, "the cache should be warm after the rebuild and the late deltas"
