"""Project keys and names for the facets, cached per (org, facet version).

Every project create, rename or delete bumps the org's facet version, so the labels of one
version never change: a cached entry is exact for as long as the version it was read at is
the one being served, and a newer version simply misses.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable

from sqlalchemy import select

from models import Database, Org, Project

Labels = dict[uuid.UUID, tuple[str, str]]


class ProjectLabels:
    """A small LRU of each org's project labels at one version."""

    def __init__(self, db: Database, max_orgs: int = 1024) -> None:
        self._db = db
        self._max_orgs = max_orgs
        self._entries: OrderedDict[uuid.UUID, tuple[int, Labels]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, org_id: uuid.UUID, version: int, project_ids: Iterable[uuid.UUID]) -> Labels:
        """Key and name of each of ``project_ids`` that still exists."""
        wanted = list(project_ids)
        if not wanted:
            return {}
        with self._lock:
            entry = self._entries.get(org_id)
            if entry is not None:
                self._entries.move_to_end(org_id)
        if entry is None or entry[0] != version:
            entry = self._load_org(org_id)
            with self._lock:
                self._entries[org_id] = entry
                self._entries.move_to_end(org_id)
                while len(self._entries) > self._max_orgs:
                    self._entries.popitem(last=False)
        labels = entry[1]
        missing = [pid for pid in wanted if pid not in labels]
        if missing:  # counts read at a newer version than the labels: look those up directly
            labels = {**labels, **self._load(missing)}
        return labels

    def _load_org(self, org_id: uuid.UUID) -> tuple[int, Labels]:
        """All the org's labels and the version they are of, read in one snapshot."""
        with self._db.read_session() as session:
            version = session.scalar(select(Org.facet_version).where(Org.id == org_id))
            rows = session.execute(
                select(Project.id, Project.key, Project.name).where(Project.org_id == org_id)
            )
            return (version if version is not None else -1), {
                pid: (key, name) for pid, key, name in rows
            }

    def _load(self, project_ids: list[uuid.UUID]) -> Labels:
        with self._db.read_session() as session:
            rows = session.execute(
                select(Project.id, Project.key, Project.name).where(Project.id.in_(project_ids))
            )
            return {pid: (key, name) for pid, key, name in rows}
