"""In-process measurements through the Flask test client: reads, writes, Redis memory, profile.

Every read scenario of one org size runs interleaved with the floor, the raw reference and the
small org (``bench.timing``), so their ratios compare requests made at the same moments.

- ``floor``: ``GET /bench/floor`` on the same app (same hooks, no auth, no SQL, no Redis).
- ``owner_warm`` / ``member_warm``: facets as shipped, polled: the org's hashes are in Redis
  and the encoded body in the process's body memo (``facets.counts.body_memo``), so a repeated
  read is a memo hit.
- ``owner_redis`` / ``member_redis``: the same reads on an app with the body memo off: served
  from the Redis hashes (what the first read of a version in a process costs).
- ``owner_cold`` / ``member_cold``: on the memo-off app, the org's Redis keys are deleted
  before each request (untimed), so it recounts in SQL and installs. The process's
  project-label cache stays warm (it is keyed by the org version, which reads do not change).
- ``owner_304``: ``If-None-Match`` with the owner's current ETag.
- ``owner_awaited``: ``owner_warm`` with the rate-limit reply awaited before the view runs (as
  a mutation's is), instead of read after it: what overlapping that round trip saves.
- ``owner_no_sql``: ``owner_warm`` with the request's one SQL statement (API key, access and
  version) answered from process memory: the best an in-process cache of credentials and
  access could do. Bench only; the service asks the database on every request.
- ``owner_no_io`` / ``owner_304_no_io``: also the rate limit counted in process memory, so the
  request makes no round trip at all: what the framework and the view cost by themselves.
- ``raw_owner`` / ``raw_member``: no Flask at all: HGETALL of the org's ``totals`` hash (the
  member: HMGET of the ``cells`` fields its view needs) on the app's Redis client, then
  ``orjson.dumps`` of the very body the endpoint returned. What any implementation must pay.
- ``small_warm``: the small org's owner, warm (the target for a member who sees 10 projects).
- ``redis_unchanged`` / ``redis_after_write``: run as a pair of their own after the others
  (they write): the owner on the memo-off app at an unchanged version, and the first read
  after a sandbox write (a create and a delete, untimed, through the same app, so its
  after-commit hook has moved the Redis hashes to the new version). A sandbox write does not
  change the project labels' version, so the second must not reload the org's labels.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import orjson
from sqlalchemy import select

from flask import Flask

from bench.floor import FLOOR_PATH
from bench.load import OrgData
from bench.timing import Scenario, Stats, run_interleaved, summarize
from facets.counts.cache import CounterCache
from facets.edge import limits
from facets.extensions import state
from models import SANDBOX_STATES, Org
from models.prepared import PreparedRead

READ_SCENARIOS = (
    "floor",
    "owner_warm",
    "owner_redis",
    "owner_cold",
    "member_warm",
    "member_redis",
    "member_cold",
    "owner_304",
    "owner_awaited",
    "owner_no_sql",
    "owner_no_io",
    "owner_304_no_io",
    "raw_owner",
    "raw_member",
    "small_warm",
    "redis_unchanged",
    "redis_after_write",
)


def facets_url(org: OrgData) -> str:
    return f"/api/v1/org/{org.slug}/sandboxes/facets"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send the per-request JSON log lines to /dev/null: still formatted and written, not shown."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


def drop_org_keys(app: Flask, org_id: uuid.UUID) -> None:
    """Make the org cold: delete its cells, totals, pending and lease keys."""
    with app.app_context():
        state().redis.delete(*CounterCache.keys(org_id), CounterCache.lease_key(org_id))


def _get(client, url: str, headers: dict[str, str], expect: int):
    def run() -> bool:
        response = client.get(url, headers=headers)
        response.get_data()
        return response.status_code == expect

    return run


def _patched(run, target, attribute: str, value):
    """``run`` with ``target.attribute`` set to ``value`` for the request, restored after
    (``mock.patch.object`` costs ~4 us a request here, well under 1% of any scenario)."""

    def patched() -> bool:
        with mock.patch.object(target, attribute, value):
            return run()

    return patched


def _awaited(run):
    """``run`` with the rate-limit reply awaited before the view, as for a mutation."""
    return _patched(run, limits, "READ_METHODS", frozenset())


class Remembered:
    """A bench knob: hot-path statements (``PreparedRead``) answered from process memory.

    Each distinct statement and parameters runs once for real, then its rows are replayed.
    Only for reads of data that does not change meanwhile (the read scenarios write nothing);
    ``executed`` / ``replayed`` show that the knob did what it says.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple, list] = {}
        self.replayed = 0

    @property
    def executed(self) -> int:
        """How many distinct statements ran for real."""
        return len(self.rows)

    def replacement(self):
        """A ``PreparedRead.rows`` that runs the real one once per statement and parameters."""
        real = PreparedRead.rows

        def remembered(prepared: PreparedRead, engine, **params):
            key = (id(prepared), tuple(sorted(params.items())))
            if key in self.rows:
                self.replayed += 1
            else:
                self.rows[key] = real(prepared, engine, **params)
            return self.rows[key]

        return remembered

    def wrap(self, run):
        """``run`` with the statements remembered for the request only."""
        return _patched(run, PreparedRead, "rows", self.replacement())

    def install(self) -> None:
        """Remember the statements for the rest of this process (a gunicorn worker's)."""
        PreparedRead.rows = self.replacement()


def _limit_in_memory(run):
    """``run`` with the rate limit counted in process memory (the limiter's Redis-down path)."""
    return _patched(run, limits.RateLimiter, "_resting", lambda _self: True)


def member_fields(org: OrgData) -> list[str]:
    """The ``cells`` fields a member's unfiltered view needs (``<state>:<project or ->``)."""
    projects = [None, *sorted(org.member_projects)]
    return [f"{s}:{p or '-'}" for s in SANDBOX_STATES for p in projects]


def check_body(body: dict, org: OrgData, who: str) -> list[str]:
    """What is wrong with a facets body (owner: counts add up to the org's sandboxes)."""
    problems = []
    if who == "owner" and org.sandboxes:
        total = sum(item["count"] for item in body["states"])
        if total != org.sandboxes:
            problems.append(f"{org.slug}: owner states add up to {total}, not {org.sandboxes}")
    if org.sandboxes and not body["states"]:
        problems.append(f"{org.slug}: {who} facets are empty")
    return problems


def read_scenarios(
    app: Flask,
    memo_off: Flask,
    org: OrgData,
    small: OrgData,
    n: int,
    n_cold: int,
    remembered: Remembered,
) -> tuple[list[Scenario], list[str]]:
    """The read scenarios of one org, primed; also any problems found while priming.

    ``memo_off`` is the same app with the body memo disabled (same database and Redis; with
    the embedded ``fakeredis://`` each app has its own, so the raw and cold scenarios use the
    memo-off app's, whose hashes its reads keep warm).
    """
    client, redis_client = app.test_client(), memo_off.test_client()
    owner, member, small_owner = (
        bearer(org.owner_key),
        bearer(org.member_key),
        bearer(small.owner_key),
    )
    url = facets_url(org)
    problems: list[str] = []
    with memo_off.app_context():
        redis = state().redis
    cells_key, totals_key, _ = CounterCache.keys(org.org_id)

    first = client.get(url, headers=owner)
    owner_body = first.get_json()
    etag = first.headers.get("ETag", "")
    member_body = client.get(url, headers=member).get_json()
    for headers, body in ((owner, owner_body), (member, member_body)):
        if redis_client.get(url, headers=headers).get_json() != body:
            problems.append(f"{org.slug}: the memo-off app answers another body")
    client.get(facets_url(small), headers=small_owner)
    problems += check_body(owner_body, org, "owner") + check_body(member_body, org, "member")
    fields = member_fields(org)
    if sum(v is not None for v in redis.hmget(cells_key, fields)) < 2:
        problems.append(f"{org.slug}: raw_member found no cells fields: the key layout changed?")
    if not redis.exists(totals_key):
        problems.append(f"{org.slug}: no totals hash after a warm read")

    def raw_owner() -> bool:
        raw = redis.hgetall(totals_key)
        orjson.dumps(owner_body, option=orjson.OPT_SORT_KEYS)
        return bool(raw)

    def raw_member() -> bool:
        raw = redis.hmget(cells_key, fields)
        orjson.dumps(member_body, option=orjson.OPT_SORT_KEYS)
        return bool(raw)

    def cold() -> None:
        redis.delete(
            cells_key,
            totals_key,
            CounterCache.keys(org.org_id)[2],
            CounterCache.lease_key(org.org_id),
        )

    scenarios = [
        Scenario("floor", _get(client, FLOOR_PATH, {}, 200), n),
        Scenario("owner_warm", _get(client, url, owner, 200), n),
        Scenario("owner_redis", _get(redis_client, url, owner, 200), n),
        Scenario("owner_cold", _get(redis_client, url, owner, 200), n_cold, prepare=cold),
        Scenario("member_warm", _get(client, url, member, 200), n),
        Scenario("member_redis", _get(redis_client, url, member, 200), n),
        Scenario("member_cold", _get(redis_client, url, member, 200), n_cold, prepare=cold),
        Scenario("owner_304", _get(client, url, {**owner, "If-None-Match": etag}, 304), n),
        Scenario("owner_awaited", _awaited(_get(client, url, owner, 200)), n),
        Scenario("owner_no_sql", remembered.wrap(_get(client, url, owner, 200)), n),
        Scenario(
            "owner_no_io", _limit_in_memory(remembered.wrap(_get(client, url, owner, 200))), n
        ),
        Scenario(
            "owner_304_no_io",
            _limit_in_memory(
                remembered.wrap(_get(client, url, {**owner, "If-None-Match": etag}, 304))
            ),
            n,
        ),
        Scenario("raw_owner", raw_owner, n),
        Scenario("raw_member", raw_member, n),
        Scenario("small_warm", _get(client, facets_url(small), small_owner, 200), n),
    ]
    return scenarios, problems


def _sandbox_write(client, org: OrgData):
    """A sandbox created and deleted again (two commits, the org's content unchanged)."""
    headers = bearer(org.owner_key)
    url = f"/api/v1/org/{org.slug}/sandboxes"
    failures = [0]

    def write() -> None:
        created = client.post(url, json={"state": "paused"}, headers=headers)
        if created.status_code != 201:
            failures[0] += 1
            return
        if client.delete(f"{url}/{created.get_json()['id']}", headers=headers).status_code != 204:
            failures[0] += 1

    return write, failures


def after_write_scenarios(memo_off: Flask, org: OrgData, n: int):
    """``redis_unchanged`` and ``redis_after_write`` (see the module docstring), and the
    count of failed writes."""
    client = memo_off.test_client()
    url, owner = facets_url(org), bearer(org.owner_key)
    write, failures = _sandbox_write(client, org)
    return [
        Scenario("redis_unchanged", _get(client, url, owner, 200), n),
        Scenario("redis_after_write", _get(client, url, owner, 200), n, prepare=write),
    ], failures


def measure_reads(
    app: Flask, memo_off: Flask, org: OrgData, small: OrgData, n: int, n_cold: int, block: int
) -> tuple[dict[str, Stats], list[str]]:
    """All read scenarios of one org, interleaved (the writing pair after the others)."""
    remembered = Remembered()
    with quiet_stderr():
        scenarios, problems = read_scenarios(app, memo_off, org, small, n, n_cold, remembered)
        stats = run_interleaved(scenarios, block, warmup=20)
        pair, failures = after_write_scenarios(memo_off, org, n)
        stats.update(run_interleaved(pair, block, warmup=5))
    if failures[0]:
        problems.append(f"{org.slug}: {failures[0]} sandbox writes before a read failed")
    if remembered.executed != 1 or not remembered.replayed:
        problems.append(
            f"{org.slug}: the no-SQL scenarios ran {remembered.executed} distinct statements "
            f"for real and replayed {remembered.replayed}; expected one, then only replays"
        )
    return stats, problems


# --- writes ----------------------------------------------------------------------------------


def _org_version(app: Flask, org_id: uuid.UUID) -> int:
    with app.app_context(), state().db.read_connection() as conn:
        return conn.execute(select(Org.facet_version).where(Org.id == org_id)).scalar_one()


def _cached_version(app: Flask, org_id: uuid.UUID) -> int | None:
    with app.app_context():
        label = state().redis.hget(CounterCache.keys(org_id)[1], "v")
    return int(label) if label is not None else None


def _patcher(client, org: OrgData, targets: list[tuple[uuid.UUID, str]]):
    """A PATCH that flips the next target between running and paused."""
    current = dict(targets)
    order = [sid for sid, _ in targets]
    position = [0]
    headers = bearer(org.owner_key)

    def run() -> bool:
        sandbox_id = order[position[0] % len(order)]
        position[0] += 1
        new = "paused" if current[sandbox_id] == "running" else "running"
        response = client.patch(
            f"/api/v1/org/{org.slug}/sandboxes/{sandbox_id}", json={"state": new}, headers=headers
        )
        response.get_data()
        if response.status_code == 200:
            current[sandbox_id] = new
            return True
        return False

    return run


def measure_writes(
    app: Flask, bare_app: Flask, org: OrgData, n: int, block: int
) -> tuple[dict[str, Stats], list[str]]:
    """PATCH with the cache hook vs the same PATCH on an app whose hooks were cleared.

    Before each block with the hook the org is read once (untimed) so its hashes are at the
    current version and the hook's script really applies; after the block the hash must still
    be at the org's version, or the hook did not keep it.
    """
    half = len(org.write_targets) // 2
    if half == 0:
        return {}, [f"{org.slug}: no sandboxes to PATCH"]
    client, bare_client = app.test_client(), bare_app.test_client()
    owner = bearer(org.owner_key)
    problems: list[str] = []
    mismatches = [0]

    hooked = Scenario("patch_with_hook", _patcher(client, org, org.write_targets[:half]), n)
    bare = Scenario("patch_no_hook", _patcher(bare_client, org, org.write_targets[half:]), n)

    def rewarm() -> None:
        client.get(facets_url(org), headers=owner).get_data()

    def check() -> None:
        if _cached_version(app, org.org_id) != _org_version(app, org.org_id):
            mismatches[0] += 1

    with quiet_stderr():
        rewarm()
        for _ in range(min(10, n)):
            bare.once()
            rewarm()
            hooked.once()
        hooked.samples_ns.clear()
        bare.samples_ns.clear()
        hooked.errors = bare.errors = 0
        done = 0
        turn = 0
        while done < n:
            size = min(block, n - done)
            pair = (hooked, bare) if turn % 2 == 0 else (bare, hooked)
            for scenario in pair:
                if scenario is hooked:
                    rewarm()
                for _ in range(size):
                    scenario.once()
                if scenario is hooked:
                    check()
            done += size
            turn += 1
    if mismatches[0]:
        problems.append(
            f"{org.slug}: after {mismatches[0]} PATCH blocks the cached version lagged the org's"
        )
    return {s.name: summarize(s.samples_ns, s.errors) for s in (hooked, bare)}, problems


# --- Redis memory ----------------------------------------------------------------------------


def redis_memory(app: Flask, org: OrgData) -> dict:
    """MEMORY USAGE (exact: SAMPLES 0), OBJECT ENCODING and HLEN of the org's two hashes."""
    out: dict = {}
    with app.app_context():
        redis = state().redis
        for name, key in zip(("cells", "totals"), CounterCache.keys(org.org_id)[:2], strict=True):
            entry: dict = {"key": key}
            try:
                entry["fields"] = redis.hlen(key)
                entry["bytes"] = redis.memory_usage(key, samples=0)
                entry["encoding"] = redis.object("encoding", key)
            except Exception as exc:  # fakeredis has no MEMORY / OBJECT
                entry.setdefault("bytes", None)
                entry.setdefault("encoding", None)
                entry["error"] = type(exc).__name__
            out[name] = entry
        try:
            config = redis.config_get("hash-max-listpack-*")
        except Exception:
            config = {}
    out["config"] = config
    return out


# --- profile ---------------------------------------------------------------------------------


def profile_warm(app: Flask, org: OrgData, n: int, out_dir: Path | None) -> str:
    """cProfile of ``n`` warm owner requests; the top functions by cumulative and own time."""
    client = app.test_client()
    url, headers = facets_url(org), bearer(org.owner_key)
    with quiet_stderr():
        for _ in range(20):
            client.get(url, headers=headers).get_data()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            client.get(url, headers=headers).get_data()
        profiler.disable()
    if out_dir is not None:
        profiler.dump_stats(str(out_dir / "warm_owner.prof"))
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    text.write(
        f"cProfile of {n} warm owner requests on {org.slug} "
        f"({len(org.project_ids)} projects); times are totals over all {n}\n"
    )
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(20)
    return text.getvalue()
