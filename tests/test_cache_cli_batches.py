"""``flask facets rebuild`` / ``verify`` over many orgs: batches, a Redis error, ``--resume-from``.

Seven orgs (one without sandboxes) in batches of three: the batched recount must equal the
per-org one, each batch must cost one Redis pipeline, a failed batch must not stop the pass,
and ``--resume-from`` must pick up at the org it names (in org id order).
"""

from __future__ import annotations

import pytest
import redis as redis_lib
from sqlalchemy import select

from facets.extensions import state
from models import Org
from models.recount import recount_org, recount_orgs

SLUGS = [f"org{i}" for i in range(7)]
BATCH = "3"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATE_LIMITS_ENABLED": False, "FACETS_BODY_MEMO_BYTES": 0}


@pytest.fixture
def by_id(world) -> list[str]:
    """The slugs in org id order (the order of a pass); org3 has no sandboxes."""
    for i, slug in enumerate(SLUGS):
        world.org(slug)
        if i == 3:
            continue
        project = world.project(slug, "web")
        world.sandboxes(slug, project, "running", 1 + i % 3)
        world.sandboxes(slug, None, "paused", 1 + i % 2)
        world.sandboxes(slug, project, "killed", i % 2)
    with world.app.app_context(), state().db.read_session() as session:
        return list(session.scalars(select(Org.slug).order_by(Org.id)))


def invoke(runner, *args):
    return runner.invoke(args=["facets", *args, "--batch", BATCH])


def org_id(app, slug):
    with app.app_context(), state().db.read_session() as session:
        return session.scalar(select(Org.id).where(Org.slug == slug))


def corrupt(app, slug) -> None:
    """Give the org a warm hash with one wrong count."""
    from facets.counts.cache import CounterCache

    with app.app_context():
        oid = org_id(app, slug)
        state().cache.install(oid, recount_org(state().db, oid), force=True)
        state().redis.hset(CounterCache.keys(oid)[0], "running:-", 99)


def differing(output: str) -> set[str]:
    return {line.split()[0] for line in output.strip().splitlines()[1:-1]}


def test_the_batched_recount_is_the_per_org_recount(app, by_id):
    with app.app_context():
        db = state().db
        pages, after = [], None
        while page := recount_orgs(db, after=after, limit=3):
            pages.append([o.slug for o in page])
            after = page[-1].org_id
            for org in page:
                assert org.recount == recount_org(db, org.org_id), org.slug
    assert pages == [by_id[0:3], by_id[3:6], by_id[6:7]]
    with app.app_context():
        (only,) = recount_orgs(state().db, slug="org3")
        assert (only.slug, only.recount.cells) == ("org3", {})


def test_each_batch_is_one_pipeline(app, runner, by_id, monkeypatch):
    executed = []  # batches run a few at a time: in any order
    real = redis_lib.client.Pipeline.execute

    def counted(self, *args, **kwargs):
        executed.append(len(self.command_stack))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis_lib.client.Pipeline, "execute", counted)
    result = invoke(runner, "rebuild")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("rebuilt 7 orgs, 7 differed before")
    assert sorted(executed) == [1, 3, 3]  # per org: one script, that checks and installs
    executed.clear()
    result = invoke(runner, "verify")
    assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 7 orgs\n")
    assert sorted(executed) == [1, 3, 3]  # per org: one script, that checks


def test_a_failed_batch_does_not_stop_the_pass_and_resume_picks_up(app, runner, by_id, monkeypatch):
    for slug in SLUGS:
        corrupt(app, slug)
    real = redis_lib.client.Pipeline.execute
    tag = f"{{{org_id(app, by_id[3])}}}"

    def second_batch_unreachable(self, *args, **kwargs):
        if any(tag in str(command[0]) for command in self.command_stack):
            self.reset()
            raise redis_lib.ConnectionError("Connection refused")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis_lib.client.Pipeline, "execute", second_batch_unreachable)
    result = invoke(runner, "rebuild")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1].startswith("rebuilt 4 orgs, 4 differed before")
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: 3 of 7 orgs not rebuilt (resume with --resume-from {by_id[3]}): "
        "Redis is unreachable: ConnectionError"
    )
    monkeypatch.setattr(redis_lib.client.Pipeline, "execute", real)

    result = invoke(runner, "verify")
    assert result.exit_code == 1
    assert differing(result.stdout) == set(by_id[3:6])

    result = invoke(runner, "rebuild", "--resume-from", by_id[3])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("rebuilt 4 orgs, 3 differed before")
    result = invoke(runner, "verify")
    assert (result.exit_code, result.stdout) == (0, "cache agrees with SQL for 7 orgs\n")


def test_resume_from_skips_the_orgs_before_it(app, runner, by_id):
    for slug in SLUGS:
        corrupt(app, slug)
    result = invoke(runner, "verify", "--resume-from", by_id[5])
    assert result.exit_code == 1
    assert differing(result.stdout) == {by_id[5], by_id[6]}
    assert result.stdout.splitlines()[-1] == "2 differences in 2 of 2 orgs"

    result = invoke(runner, "rebuild", "--resume-from", by_id[2])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("rebuilt 5 orgs, 5 differed before")
    result = invoke(runner, "verify")
    assert result.exit_code == 1
    assert differing(result.stdout) == {by_id[0], by_id[1]}


@pytest.mark.parametrize("command", ["verify", "rebuild"])
def test_resume_from_an_unknown_org_is_a_one_line_error(runner, by_id, command):
    result = invoke(runner, command, "--resume-from", "nope")
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == ["Error: Organization 'nope' not found."]
