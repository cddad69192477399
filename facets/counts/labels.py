"""Project keys and names for the facets, cached per (org, labels version).

Every project create, rename or delete bumps the org's ``labels_version`` (and nothing else
does), so the labels of one labels version never change: an entry is read together with the
labels version it is of (one snapshot), and it is exact for every facet version read with that
labels version (``Access.labels_version``, same snapshot as ``Access.version``). A sandbox
write bumps the facet version only: the next read still finds its labels here.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from typing import NamedTuple

from sqlalchemy import select

from models import Database, Org, Project


class Label(NamedTuple):
    """A project's key and name, and its place in the facet's tie-break order."""

    key: str
    name: str
    order: tuple[str, str, str]


Labels = dict[str, Label]


def _label(project_id: uuid.UUID, key: str, name: str) -> tuple[str, Label]:
    pid = str(project_id)
    return pid, Label(key, name, (name.casefold(), key, pid))


class ProjectLabels:
    """A small LRU of each org's project labels at one version, keyed by project id string."""

    def __init__(self, db: Database, max_orgs: int = 1024) -> None:
        self._db = db
        self._max_orgs = max_orgs
        self._entries: OrderedDict[uuid.UUID, tuple[int, Labels]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, org_id: uuid.UUID, version: int | None) -> tuple[int, Labels]:
        """The org's labels and the labels version they are of: ``version`` if held, else the
        org's newest, which a project write that landed since makes newer than ``version``
        (the caller then reads again: ``facets.counts.read.read_facets``)."""
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
        return entry

    def _load_org(self, org_id: uuid.UUID) -> tuple[int, Labels]:
        """All the org's labels and the labels version they are of, read in one snapshot."""
        with self._db.read_session() as session:
            version = session.scalar(select(Org.labels_version).where(Org.id == org_id))
            rows = session.execute(
                select(Project.id, Project.key, Project.name).where(Project.org_id == org_id)
            )
            labels = dict(_label(*row) for row in rows)
        return (version if version is not None else -1), labels
