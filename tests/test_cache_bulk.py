"""The admin passes' scripts judge an org's hashes inside Redis exactly as the field-by-field
compare does on the client: for any hashes, damaged in any way, ``verify``'s pipelined check
finds the differences the atomic snapshot finds, and ``rebuild``'s install leaves the recount.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facets.cli.passes import compare, read_snapshot
from facets.counts.bulk import run_orgs
from facets.counts.cache import CounterCache
from facets.extensions import state
from models.events import encode_cells
from models.recount import OrgRecount, Recount

pytestmark = pytest.mark.cluster  # also on the Redis Cluster leg

ORG = uuid.uuid4()
PROJECTS = [None, uuid.uuid4(), uuid.uuid4()]
STATES = ("running", "paused", "killed")

recounts = st.builds(
    Recount,
    version=st.integers(0, 30),
    cells=st.dictionaries(
        st.tuples(st.sampled_from(STATES), st.sampled_from(PROJECTS)), st.integers(1, 40)
    ),
)
# What can be wrong with the hashes: (which hash, field, value or None to delete it).
fields = st.one_of(
    st.sampled_from(["v", "running:-", "paused:-", "s:running", "s:killed"]),
    st.tuples(st.sampled_from(STATES), st.sampled_from(PROJECTS[1:])).map(
        lambda c: f"{c[0]}:{c[1]}"
    ),
    st.sampled_from(PROJECTS[1:]).map(lambda p: f"p:{p}"),
)
values = st.one_of(
    st.none(), st.integers(-2, 40).map(str), st.sampled_from(["03", "abc", "", "1.0"])
)
damages = st.lists(st.tuples(st.integers(0, 1), fields, values), max_size=4)
starts = st.sampled_from(["installed", "cold", "installed elsewhere", "one hash", "wrong type"])


def batched(recount: Recount) -> OrgRecount:
    """The recount as a batch of the admin passes carries it."""
    return OrgRecount(ORG, "o", recount.version, encode_cells(recount.cells.items()))


@pytest.fixture
def cache(app) -> CounterCache:
    with app.app_context():
        return state().cache


def prepare(cache: CounterCache, start: str, recount: Recount, other: Recount, damage) -> None:
    """Hashes that hold ``recount`` or ``other`` (or nothing), then damaged."""
    keys = cache.keys(ORG)
    cache.redis.delete(*keys)
    if start != "cold":
        cache.install(ORG, recount if start == "installed" else other, force=True)
    if start == "one hash":
        cache.redis.delete(keys[1])
    for which, field, value in damage:
        if start == "wrong type":
            break
        if value is None:
            cache.redis.hdel(keys[which], field)
        else:
            cache.redis.hset(keys[which], field, value)
    if start == "wrong type":
        cache.redis.delete(keys[1])
        cache.redis.set(keys[1], "x")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(recount=recounts, other=recounts, start=starts, damage=damages)
def test_the_pipelined_check_finds_what_the_field_by_field_compare_finds(
    cache, recount, other, start, damage
):
    prepare(cache, start, recount, other, damage)
    expected = compare("o", read_snapshot(cache, ORG), recount)
    (reply,) = run_orgs(cache, [batched(recount)])
    found = [] if reply.agrees else compare("o", reply.snapshot, recount)
    assert found == expected
    assert reply.error is None


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(recount=recounts, other=recounts, start=starts, damage=damages)
def test_the_pipelined_install_leaves_exactly_the_recount(cache, recount, other, start, damage):
    prepare(cache, start, recount, other, damage)
    before = compare("o", read_snapshot(cache, ORG), recount)
    cold = start == "cold" and not any(value is not None for _, _, value in damage)
    (reply,) = run_orgs(cache, [batched(recount)], install=True, force=True)
    assert reply.installed == "installed"
    if before:
        assert reply.before == "differed"
    if reply.before == "same":
        assert not before and not cold
    snapshot = read_snapshot(cache, ORG)
    assert snapshot is not None and snapshot[0] is not None
    assert compare("o", snapshot, recount) == []
