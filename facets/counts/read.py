"""The facet read path: the caller's view of the org's counts, from the memo, Redis or SQL.

Read it top-down from ``answer_facets``, the one entry point: the body memo answers a repeated
read of an unchanged view with the bytes of an earlier answer of the same version
(``facets.counts.body_memo``); otherwise ``read_counts`` decides where counts come from: the
Redis hashes when they are labelled with the caller's org version (see ``facets.counts.cache``),
else the SQL recount, which the counter cache's lease lets one reader install
(``CounterCache.recount_once``). Everything after it (labels, ordering, the body) is the same
whatever the source, so a response does not depend on how its counts were obtained.

Project ids travel as canonical id strings here, as Redis holds them: a warm read of an org
with thousands of cells parses none of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import select

from facets.counts.body_memo import MemoEntry
from facets.counts.cache import CounterCache, KeyedCell, cell_field, keyed_cells
from facets.counts.etag import content_tag, view_key
from facets.counts.labels import Labels
from facets.extensions import FacetsState, state
from facets.json import dumps_body
from facets.ops.metrics import CACHE_RECOUNTS
from models import SANDBOX_STATES, Access, Org
from models.access import org_not_found
from models.recount import recount_org

# Rereads of a view whose labels came out newer than its counts: each one means a write
# committed during the previous read; a view is read at most 1 + LABEL_REREADS times.
LABEL_REREADS = 3


@dataclass(frozen=True)
class FacetFilter:
    """The caller's filters, normalized: states in first-seen order, no duplicates."""

    states: tuple[str, ...] = ()
    project_id: uuid.UUID | None = None


@dataclass(frozen=True)
class FacetCounts:
    """Counts per state and per project id of the caller's view, and how they were obtained."""

    by_state: dict[str, int]
    by_project: dict[str, int]
    path: str  # "warm", "cold" or "empty"


def slice_cells(
    cells: Mapping[KeyedCell, int], access: Access, flt: FacetFilter
) -> tuple[dict[str, int], dict[str, int]]:
    """Sum the cells the caller may see and the filters select, per state and per project."""
    visible = None if access.project_ids is None else {str(p) for p in access.project_ids}
    wanted = None if flt.project_id is None else str(flt.project_id)
    by_state: dict[str, int] = {}
    by_project: dict[str, int] = {}
    for (cell_state, project), count in cells.items():
        if count <= 0 or (visible is not None and project is not None and project not in visible):
            continue
        if (flt.states and cell_state not in flt.states) or (
            wanted is not None and project != wanted
        ):
            continue
        by_state[cell_state] = by_state.get(cell_state, 0) + count
        if project is not None:
            by_project[project] = by_project.get(project, 0) + count
    return by_state, by_project


def _needed_fields(access: Access, flt: FacetFilter) -> list[str] | None:
    """The ``cells`` fields a view needs, when its projects are known (None: all of them)."""
    if flt.project_id is not None:
        projects: list[uuid.UUID | None] = [flt.project_id]
    elif access.project_ids is not None:
        projects = [None, *sorted(access.project_ids)]
    else:
        return None
    return [cell_field(s, p) for s in flt.states or SANDBOX_STATES for p in projects]


def cached_counts(
    cache: CounterCache, access: Access, flt: FacetFilter
) -> tuple[int | None, FacetCounts | None]:
    """The view's counts from Redis if labelled with the access's version; also the label seen.

    The unfiltered owner view reads the roll-ups (no aggregation at all); a view whose
    projects are known reads just their cells (HMGET); any other reads every cell.

    :raise redis.RedisError: Redis is unreachable.
    """
    if access.project_ids is None and not flt.states and flt.project_id is None:
        totals = cache.read_totals(access.org_id)
        if totals is None:
            return None, None
        if totals.version != access.version:
            return totals.version, None
        return totals.version, FacetCounts(totals.by_state, totals.by_project, "warm")
    cached = cache.read_cells(access.org_id, _needed_fields(access, flt))
    if cached is None:
        return None, None
    if cached.version != access.version:
        return cached.version, None
    return cached.version, FacetCounts(*slice_cells(cached.cells, access, flt), "warm")


def recount_counts(
    st: FacetsState, access: Access, flt: FacetFilter, install: bool
) -> tuple[Access, FacetCounts]:
    """The view's counts from the SQL recount, installed in Redis when ``install``.

    The caller's access is re-read in the recount's snapshot: when commits landed since the
    caller's first read, counts and visibility are still of one version.

    :raise Timeout: the recount exceeded ``RECOUNT_TIMEOUT_MS`` (a 504).
    """
    recount = recount_org(
        st.db, access.org_id, timeout_ms=st.recount_timeout_ms, caller=access.user_id
    )
    if recount is None or recount.access is None:
        raise org_not_found(access.org_slug)
    CACHE_RECOUNTS.inc()
    if install:
        st.cache.install(
            access.org_id, recount, sql_version=lambda: current_version(st, access.org_id)
        )
    counts = slice_cells(keyed_cells(recount.cells), recount.access, flt)
    return recount.access, FacetCounts(*counts, "cold")


def current_version(st: FacetsState, org_id: uuid.UUID) -> int:
    """The org's facet version now (a later statement than any snapshot read so far)."""
    with st.db.read_connection() as conn:
        return conn.scalar(select(Org.facet_version).where(Org.id == org_id))


def cold_counts(st: FacetsState, access: Access, flt: FacetFilter) -> tuple[Access, FacetCounts]:
    """The view's counts when Redis does not hold the caller's version: one reader per org
    recounts and installs under the counter cache's lease (``CounterCache.recount_once``).

    :raise Timeout: neither this reader's recount nor the lease holder's finished in time.
    """

    def lookup() -> tuple[int | None, tuple[Access, FacetCounts] | None]:
        label, counts = cached_counts(st.cache, access, flt)
        return label, None if counts is None else (access, counts)

    return st.cache.recount_once(
        access.org_id,
        access.version,
        lookup,
        lambda install: recount_counts(st, access, flt, install=install),
        wait_s=st.recount_timeout_ms / 1000,
    )


def read_counts(
    access: Access, flt: FacetFilter, refresh: Callable[[], Access] | None = None
) -> tuple[Access, FacetCounts]:
    """The counts of the caller's view, and the access (of the same version) they are for.

    When Redis already holds a newer version than the caller's snapshot, the access is read
    again once (``refresh``) so that a busy org keeps being served warm.
    """
    if flt.project_id is not None and not access.sees_project(flt.project_id):
        return access, FacetCounts({}, {}, "empty")
    st = state()
    try:
        label, counts = cached_counts(st.cache, access, flt)
        if counts is None and refresh is not None and label is not None and label > access.version:
            access = refresh()
            label, counts = cached_counts(st.cache, access, flt)
    except redis.RedisError as exc:
        st.cache.absorb("read", exc)
        access, counts = recount_counts(st, access, flt, install=False)
    if counts is None:
        access, counts = cold_counts(st, access, flt)
    return access, counts


def _by_count_then_state(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def facets_body(counts: FacetCounts, labels: Labels) -> dict[str, list[dict[str, Any]]]:
    """The ``SandboxFacetsResponse`` body, both lists in the contract's order.

    Built directly, as ``SandboxFacetsResponseSchema`` would dump it (a test holds them equal):
    a generic dump of thousands of entries would cost more than the rest of a warm read.
    """
    ranked = sorted(
        (
            (-count, label.order, count, project_id, label)
            for project_id, count in counts.by_project.items()
            if (label := labels.get(project_id)) is not None  # deleted since: not selectable
        ),
    )
    return {
        "projects": [
            {
                "count": count,
                "project_id": pid,
                "project_key": label.key,
                "project_name": label.name,
            }
            for _, _, count, pid, label in ranked
        ],
        "states": [
            {"count": count, "value": value}
            for value, count in sorted(counts.by_state.items(), key=_by_count_then_state)
            if count > 0
        ],
    }


def _newer(labels_version: int, access: Access) -> bool:
    """Whether labels of ``labels_version`` are newer than the access's (unknown: assume so)."""
    return access.labels_version is None or labels_version > access.labels_version


@dataclass(frozen=True)
class FacetsRead:
    """A facets body, the access it was computed for, and the path that served it."""

    body: dict[str, list[dict[str, Any]]]
    access: Access  # of the very version the counts are of
    path: str


def read_facets(
    access: Access, flt: FacetFilter, refresh: Callable[[], Access] | None = None
) -> FacetsRead:
    """The facets of the caller's current view of the org.

    Counts and project labels are of one version: the access carries the labels version read
    with its facet version, and labels are cached per labels version, so a sandbox write does
    not reload them. Labels not held at the access's labels version are read at the org's
    newest; when a project write landed between the two reads (the labels are of a newer
    labels version), the whole view is read again at the newer version, up to
    ``LABEL_REREADS`` times: otherwise the body would name a project as renamed since, or
    leave out one deleted since while the states still count its sandboxes.
    """
    labels_cache = state().labels
    access, counts = read_counts(access, flt, refresh)
    labels_version, labels = labels_cache.get(access.org_id, access.labels_version)
    rereads = 0
    while _newer(labels_version, access) and refresh is not None and rereads < LABEL_REREADS:
        rereads += 1
        access, counts = read_counts(refresh(), flt, refresh)
        labels_version, labels = labels_cache.get(access.org_id, access.labels_version)
    return FacetsRead(facets_body(counts, labels), access, counts.path)


@dataclass(frozen=True)
class FacetsAnswer:
    """The encoded ``200`` body of a view, its tag, the access it is of, and what served it."""

    body: bytes
    etag: str  # facets.counts.etag.content_tag of the view and body
    access: Access  # of the very version the body is of
    path: str  # "memo", "warm", "cold" or "empty"


def answer_facets(
    access: Access, flt: FacetFilter, refresh: Callable[[], Access] | None = None
) -> FacetsAnswer:
    """The ``200`` of the caller's view at ``access``'s version (or a newer one a refresh
    read): the one entry point that decides memo, then Redis, then the SQL recount.

    The memo answers a repeated read of an unchanged view with the bytes and tag of an earlier
    answer; otherwise ``read_facets`` reads the counts (Redis, else a recount it installs),
    the body is encoded and tagged with its digest, and memoized under the access it was
    computed for, which a refresh may have made newer than the caller's first one.
    """
    memo = state().body_memo
    view = view_key(access, flt)
    held = memo.get(access.org_id, access.version, view)
    if held is not None:
        return FacetsAnswer(held.body, held.etag, access, "memo")
    result = read_facets(access, flt, refresh)
    if result.access is not access:
        view = view_key(result.access, flt)
    body = dumps_body(result.body)
    entry = MemoEntry(body, content_tag(view, body))
    memo.put(result.access.org_id, result.access.version, view, entry)
    return FacetsAnswer(body, entry.etag, result.access, result.path)
