"""``REDIS_URL`` for a Redis Cluster: parsed, checked once at start-up, and served through.

The tests that need a cluster use the cluster leg's (``TEST_REDIS_CLUSTER_URL``, else one
this session starts on loopback); the SQL side is the fast leg's SQLite, which is enough
for what start-up decides.
"""

from __future__ import annotations

import pytest
from conftest import (
    JWT_SECRET,
    TEST_REDIS_URL,
    World,
    flush_cluster,
    free_port,
    require_redis_server,
)

from facets import create_app
from facets.extensions import state
from facets.redis_cluster import cluster_nodes


@pytest.fixture
def sqlite_config(sqlite_template, tmp_path) -> dict:
    import shutil

    db = tmp_path / "facets.sqlite3"
    shutil.copy(sqlite_template, db)
    return {"TESTING": True, "JWT_SECRET": JWT_SECRET, "DATABASE_URL": f"sqlite:///{db}"}


@pytest.mark.parametrize(
    ("url", "first", "nodes"),
    [
        ("redis+cluster://10.0.0.1:7000", "redis://10.0.0.1:7000", [("10.0.0.1", 7000)]),
        (
            "redis+cluster://u:p%40ss@a:7000,b:7001,c/0?socket_keepalive=true",
            "redis://u:p%40ss@a:7000/0?socket_keepalive=true",
            [("a", 7000), ("b", 7001), ("c", 6379)],
        ),
        ("rediss+cluster://a:7000, b:7001", "rediss://a:7000", [("a", 7000), ("b", 7001)]),
    ],
)
def test_cluster_url_names_every_startup_node(url, first, nodes):
    assert cluster_nodes(url) == (first, nodes)


@pytest.mark.parametrize(
    "url", ["redis+cluster://a:70x0", "redis+cluster://", "redis+cluster://:1"]
)
def test_a_malformed_cluster_url_is_refused_at_start_up(sqlite_config, url):
    with pytest.raises(RuntimeError, match="REDIS_URL"):
        create_app({**sqlite_config, "REDIS_URL": url})


def test_a_single_node_url_at_a_cluster_node_is_refused_at_start_up(
    sqlite_config, redis_cluster_url
):
    host, port = cluster_nodes(redis_cluster_url)[1][0]
    with pytest.raises(RuntimeError, match=r"Redis Cluster node .* redis\+cluster://"):
        create_app({**sqlite_config, "REDIS_URL": f"redis://{host}:{port}/0"})


def test_a_cluster_url_at_a_single_redis_is_refused_at_start_up(sqlite_config):
    if not TEST_REDIS_URL:
        pytest.skip("needs TEST_REDIS_URL (a single Redis)")
    host_port = TEST_REDIS_URL.removeprefix("redis://").split("/")[0]
    with pytest.raises(RuntimeError, match="names no usable Redis Cluster"):
        create_app({**sqlite_config, "REDIS_URL": f"redis+cluster://{host_port}"})


ORGS = [f"org{i}" for i in range(8)]


def populate(app) -> list[tuple[str, object, object]]:
    """Eight orgs (their slots spread over the masters), two running sandboxes each, and an
    owner of each."""
    world = World(app)
    callers = []
    for slug in ORGS:
        org_id = world.org(slug)
        world.sandboxes(slug, None, "running", 2)
        callers.append((slug, org_id, world.caller(slug, "owner")))
    return callers


def read_all(app, callers) -> None:
    client = app.test_client()
    for slug, _, caller in callers:
        response = client.get(f"/api/v1/org/{slug}/sandboxes/facets", headers=caller.headers)
        assert response.status_code == 200, response.json
        assert response.json["states"] == [{"count": 2, "value": "running"}]


def test_a_cluster_down_at_start_up_serves_from_sql_and_is_degraded(sqlite_config):
    require_redis_server()
    app = create_app({**sqlite_config, "REDIS_URL": f"redis+cluster://127.0.0.1:{free_port()}"})
    try:
        callers = populate(app)
        ready = app.test_client().get("/readyz")
        assert (ready.status_code, ready.json["redis"]) == (200, "unavailable")
        read_all(app, callers)
    finally:
        with app.app_context():
            state().db.dispose()


def test_one_startup_node_is_enough_for_every_slot(sqlite_config, redis_cluster_url):
    """The client learns the slot map and follows ``MOVED``: every org's hash is installed,
    whichever master holds it."""
    flush_cluster(redis_cluster_url)
    host, port = cluster_nodes(redis_cluster_url)[1][0]
    app = create_app({**sqlite_config, "REDIS_URL": f"redis+cluster://{host}:{port}"})
    try:
        callers = populate(app)
        assert app.test_client().get("/readyz").json == {
            "status": "ok",
            "database": "ok",
            "redis": "ok",
        }
        read_all(app, callers)
        with app.app_context():
            cache, cluster = state().cache, state().redis.client
            org_ids = [org_id for _, org_id, _ in callers]
            warm = [cache.snapshot(org_id)[0] for org_id in org_ids]
            masters = {cluster.get_node_from_key(cache.keys(org_id)[0]).name for org_id in org_ids}
    finally:
        with app.app_context():
            state().db.dispose()
            state().redis.close()
    assert all(cells is not None and cells.version >= 1 for cells in warm), warm
    assert len(masters) > 1, masters
