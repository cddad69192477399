"""A per-process memo of encoded facets bodies and their tags, keyed by the org version they are of.

It owns the bytes of ``200`` facets bodies, exactly as sent, and their entity tags (a digest of
the bytes, ``facets.counts.etag.content_tag``), so that a repeated read of an unchanged view,
or a ``304`` of it, costs no Redis call, no aggregation, no encoding and no hashing. A body
is a function of the org, its facet version, the caller's visible projects and the
normalized filters: every change to an org's sandboxes, projects or project memberships bumps
the version (``models/uow.py``), and a role change, which does not, changes the visible projects.
The version is read from the database with the caller's access on every request, so the
database is the source of truth: an entry is exact for its key, is never invalidated, and a
read at a newer version simply misses. (A body's project labels are of its version:
``facets.counts.read.read_facets`` reads a view again when they came out newer. Only a read that
more than ``LABEL_REREADS`` writes in a row overtook may carry a newer name or leave out a
project deleted since, and the memo then holds it under a version nobody reads any more.)

Invariants:

- An entry's key is (org id, version, view key). The view key (``facets.counts.etag.view_key``)
  is a digest of the org, the visible projects and the filters: two callers share an entry
  exactly when they see the same view, and the entry's tag is the tag of its body.
- An org's entries are all of one version. A lookup at a newer version drops them (nobody
  will ask for them again). A lookup at an older version means the database went back in time
  (restored from a backup), where the same version number may name other contents: it drops
  them too (a read that raced a commit does the same, which only costs a miss). A store at an
  older version than the one held is ignored (a slow read that has been superseded).
- The bodies plus a fixed per-entry overhead never exceed ``max_bytes``; the least recently
  used entries are evicted first, and an entry larger than the bound is not stored. A bound
  of 0 disables the memo.
- Thread-safe: one lock around every operation (gunicorn runs gthread workers).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

# What an entry costs besides its body and tag characters: the key tuple, the view key and tag
# strings, the entry and bytes headers and the LRU's and the org index's slots (about 330
# bytes, measured with tracemalloc).
ENTRY_OVERHEAD = 340

Key = tuple[uuid.UUID, str]  # org id, view key (the version is the org's, in _HeldOrg)


@dataclass(frozen=True, slots=True)
class MemoEntry:
    """An encoded ``200`` body and its entity tag."""

    body: bytes
    etag: str


@dataclass
class _HeldOrg:
    """The one version the memo holds an org's entries at, and their view keys."""

    version: int
    views: set[str] = field(default_factory=set)


def entry_cost(entry: MemoEntry) -> int:
    """The bytes an entry counts against the bound."""
    return len(entry.body) + len(entry.etag) + ENTRY_OVERHEAD


class BodyMemo:
    """An LRU of encoded facets bodies bounded in bytes; see the module docstring."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, MemoEntry] = OrderedDict()  # least recently used first
        self._orgs: dict[uuid.UUID, _HeldOrg] = {}
        self._held_bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        """What the entries held now count against the bound."""
        return self._held_bytes

    def get(self, org_id: uuid.UUID, version: int, view: str) -> MemoEntry | None:
        """The body and tag of this view at this version, if held."""
        with self._lock:
            held = self._orgs.get(org_id)
            if held is None:
                return None
            if held.version != version:
                self._drop_org(org_id, held)
                return None
            entry = self._entries.get((org_id, view))
            if entry is not None:
                self._entries.move_to_end((org_id, view))
            return entry

    def put(self, org_id: uuid.UUID, version: int, view: str, entry: MemoEntry) -> None:
        """Hold the entry of this view at this version (evicting the least recently used)."""
        cost = entry_cost(entry)
        if cost > self.max_bytes:
            return
        with self._lock:
            held = self._orgs.get(org_id)
            if held is not None and held.version != version:
                if version < held.version:
                    return
                self._drop_org(org_id, held)
                held = None
            if held is None:
                held = self._orgs[org_id] = _HeldOrg(version)
            replaced = self._entries.pop((org_id, view), None)
            if replaced is not None:
                self._held_bytes -= entry_cost(replaced)
            self._entries[(org_id, view)] = entry
            held.views.add(view)
            self._held_bytes += cost
            while self._held_bytes > self.max_bytes:
                (lru_org, lru_view), lru_entry = self._entries.popitem(last=False)
                self._held_bytes -= entry_cost(lru_entry)
                lru_held = self._orgs[lru_org]
                lru_held.views.discard(lru_view)
                if not lru_held.views:
                    del self._orgs[lru_org]

    def _drop_org(self, org_id: uuid.UUID, held: _HeldOrg) -> None:
        for view in held.views:
            self._held_bytes -= entry_cost(self._entries.pop((org_id, view)))
        del self._orgs[org_id]
