"""The cache's Redis scripts: ordered apply, buffering, idempotence, compare-and-set install."""

import uuid

import pytest

from facets.counts.cache import CounterCache
from facets.extensions import state
from models.recount import Recount

P = uuid.uuid4()
ORG = uuid.uuid4()
pytestmark = pytest.mark.cluster  # also on the Redis Cluster leg


@pytest.fixture
def cache(app) -> CounterCache:
    with app.app_context():
        return state().cache


def cells(cache: CounterCache):
    """The org's cells hash as (version, cells keyed by UUID), or None."""
    snapshot = cache.snapshot(ORG)[0]
    if snapshot is None:
        return None
    return snapshot.version, {
        (s, uuid.UUID(p) if p else None): n for (s, p), n in snapshot.cells.items()
    }


def install(cache, version, counts):
    return cache.install(ORG, Recount(version, counts))


def test_increment_for_absent_hash_creates_nothing(cache):
    assert cache.apply(ORG, 1, {("running", P): 1}) == "absent"
    assert cells(cache) is None
    assert cache.read_totals(ORG) is None


@pytest.mark.parametrize("evicted", [0, 1], ids=["cells", "totals"])
def test_a_hash_evicted_alone_takes_its_pair_with_it_on_the_next_apply(cache, evicted):
    install(cache, 3, {("running", P): 2})
    cache.redis.delete(cache.keys(ORG)[evicted])
    assert cache.apply(ORG, 4, {("running", P): 1}) == "absent"
    assert cells(cache) is None
    assert cache.read_totals(ORG) is None
    assert install(cache, 3, {("running", P): 2}) == "installed"  # the buffered 4 follows
    assert cells(cache) == (4, {("running", P): 3})
    assert cache.read_totals(ORG).by_state == {"running": 3}


def test_deltas_apply_in_version_order_only(cache):
    install(cache, 3, {("running", P): 2})
    assert cache.apply(ORG, 5, {("paused", P): 1}) == "buffered"
    assert cells(cache) == (3, {("running", P): 2})
    assert cache.apply(ORG, 4, {("running", P): -1, ("killed", P): 1}) == "applied"
    assert cells(cache) == (5, {("running", P): 1, ("killed", P): 1, ("paused", P): 1})


@pytest.mark.parametrize("version", [2, 3])
def test_repeated_or_old_deltas_are_ignored(cache, version):
    install(cache, 3, {("running", P): 2})
    assert cache.apply(ORG, version, {("running", P): -1}) == "stale"
    assert cells(cache) == (3, {("running", P): 2})


def test_fields_reaching_zero_are_deleted(cache):
    install(cache, 1, {("running", P): 1, ("paused", None): 1})
    cache.apply(ORG, 2, {("running", P): -1})
    assert cells(cache) == (2, {("paused", None): 1})
    totals = cache.read_totals(ORG)
    assert (totals.by_state, totals.by_project) == ({"paused": 1}, {})


def test_install_never_replaces_a_newer_hash(cache):
    install(cache, 5, {("running", P): 4})
    assert install(cache, 4, {("running", P): 3}) == "kept"
    assert cells(cache) == (5, {("running", P): 4})


def test_install_applies_buffered_successors_and_drops_older_ones(cache):
    cache.apply(ORG, 3, {("running", P): 1})  # absent: waits for an install
    cache.apply(ORG, 4, {("paused", P): 1})
    assert install(cache, 3, {("running", P): 1}) == "installed"  # already includes 3
    assert cells(cache) == (4, {("running", P): 1, ("paused", P): 1})


def test_install_at_equal_version_repairs_a_corrupted_hash(cache):
    install(cache, 2, {("running", P): 2})
    cells_key = cache.keys(ORG)[0]
    cache.redis.hset(cells_key, f"running:{P}", 7)
    assert install(cache, 2, {("running", P): 2}) == "installed"
    assert cells(cache) == (2, {("running", P): 2})


def test_a_count_going_negative_drops_the_hash(cache):
    install(cache, 1, {("running", P): 1})
    assert cache.apply(ORG, 2, {("running", P): -2}) == "corrupt"
    assert cells(cache) is None
    assert cache.read_totals(ORG) is None


def test_totals_roll_up_cells(cache):
    q = uuid.uuid4()
    install(cache, 1, {("running", P): 2, ("paused", P): 1, ("running", q): 3, ("killed", None): 4})
    totals = cache.read_totals(ORG)
    assert totals.version == 1
    assert totals.by_state == {"running": 5, "paused": 1, "killed": 4}
    assert totals.by_project == {str(P): 3, str(q): 3}


def test_all_keys_of_an_org_share_one_cluster_slot(cache):
    keys = [*cache.keys(ORG), cache.lease_key(ORG)]
    assert {key[key.index("{") : key.index("}") + 1] for key in keys} == {f"{{{ORG}}}"}


def test_a_forced_install_replaces_a_newer_hash(cache):
    install(cache, 5, {("running", P): 4})
    assert cache.install(ORG, Recount(4, {("running", P): 3}), force=True) == "installed"
    assert cells(cache) == (4, {("running", P): 3})


def test_a_read_install_replaces_a_label_sql_has_not_reached(cache):
    install(cache, 9, {("running", P): 4})  # left by a database restored to version 3
    result = cache.install(ORG, Recount(3, {("running", P): 1}), sql_version=lambda: 3)
    assert result == "installed"
    assert cells(cache) == (3, {("running", P): 1})


def test_a_read_install_keeps_a_newer_label_sql_has_reached(cache):
    install(cache, 5, {("running", P): 4})
    assert cache.install(ORG, Recount(4, {("running", P): 3}), sql_version=lambda: 5) == "kept"
    assert cells(cache) == (5, {("running", P): 4})


def test_an_apply_announces_its_version_on_the_orgs_channel_whatever_its_outcome(cache):
    """The version notice rides in the apply script (one round trip per commit for both), on
    the org's own slot, and goes out first: even deltas that only wait (no hash yet) wake the
    org's waiting reads, which then read through the normal path."""
    command, channel = cache.announce(ORG)
    sharded = command == "SPUBLISH"
    listener = cache.redis.pubsub()
    (listener.ssubscribe if sharded else listener.subscribe)(channel)
    receive = listener.get_sharded_message if sharded else listener.get_message

    def next_message(timeout: float = 5.0) -> dict:
        for _ in range(50):
            message = receive(timeout=timeout / 50)
            if message and message["type"] in ("message", "smessage"):
                return message
        raise AssertionError("no version notice")

    try:
        assert cache.apply(ORG, 1, {("running", P): 1}) == "absent"
        assert next_message()["data"] in ("1", b"1")
        install(cache, 1, {("running", P): 1})
        assert cache.apply(ORG, 2, {("running", P): 1}) == "applied"
        assert next_message()["data"] in ("2", b"2")
    finally:
        listener.close()
