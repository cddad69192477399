"""Domain events: what a committed unit of work changed, read from the rows it changed.

A facet cell is a ``(state, project_id or None)`` pair; ``deltas()`` says how each event
moves the cells' counts. Events are recorded from the database rows as they were under the
org lock, never from what a request asked for, so replaying them in commit order reproduces
the committed counts exactly.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

Cell = tuple[str, uuid.UUID | None]

# Cells as words, the form the counter cache's scripts take and the batched recount reads out
# of SQL: "state project n" per cell, space separated, the project as its canonical id string
# (NO_PROJECT for none).
NO_PROJECT = "-"


def encode_cells(cells: Iterable[tuple[Cell, int]]) -> str:
    """(cell, n) pairs as words."""
    return " ".join(f"{state} {project or NO_PROJECT} {n}" for (state, project), n in cells)


def decode_cells(words: str) -> dict[Cell, int]:
    """The cells of ``encode_cells`` words."""
    t = words.split()
    return {
        (t[i], None if t[i + 1] == NO_PROJECT else uuid.UUID(t[i + 1])): int(t[i + 2])
        for i in range(0, len(t), 3)
    }


@dataclass(frozen=True)
class Event:
    org_id: uuid.UUID
    changes_labels: ClassVar[bool] = False  # whether it changes a project's key or name

    def deltas(self) -> Counter[Cell]:
        """How this event changes the org's facet cells (empty when it changes no count)."""
        return Counter()


@dataclass(frozen=True)
class SandboxCreated(Event):
    sandbox_id: uuid.UUID
    state: str
    project_id: uuid.UUID | None

    def deltas(self) -> Counter[Cell]:
        return Counter({(self.state, self.project_id): 1})


@dataclass(frozen=True)
class SandboxStateChanged(Event):
    sandbox_id: uuid.UUID
    project_id: uuid.UUID | None
    old_state: str
    new_state: str

    def deltas(self) -> Counter[Cell]:
        d = Counter({(self.new_state, self.project_id): 1})
        d[(self.old_state, self.project_id)] -= 1
        return d


@dataclass(frozen=True)
class SandboxMoved(Event):
    sandbox_id: uuid.UUID
    state: str
    old_project_id: uuid.UUID | None
    new_project_id: uuid.UUID | None

    def deltas(self) -> Counter[Cell]:
        d = Counter({(self.state, self.new_project_id): 1})
        d[(self.state, self.old_project_id)] -= 1
        return d


@dataclass(frozen=True)
class SandboxDeleted(Event):
    sandbox_id: uuid.UUID
    state: str
    project_id: uuid.UUID | None

    def deltas(self) -> Counter[Cell]:
        d: Counter[Cell] = Counter()
        d[(self.state, self.project_id)] -= 1
        return d


@dataclass(frozen=True)
class ProjectCreated(Event):
    changes_labels: ClassVar[bool] = True

    project_id: uuid.UUID
    key: str
    name: str


@dataclass(frozen=True)
class ProjectRenamed(Event):
    changes_labels: ClassVar[bool] = True

    project_id: uuid.UUID
    old_key: str
    old_name: str
    key: str
    name: str


@dataclass(frozen=True)
class ProjectDeleted(Event):
    """A project is gone; ``moved`` counts, per state, its sandboxes now without a project."""

    changes_labels: ClassVar[bool] = True

    project_id: uuid.UUID
    moved: dict[str, int] = field(default_factory=dict)

    def deltas(self) -> Counter[Cell]:
        d: Counter[Cell] = Counter()
        for state, n in self.moved.items():
            d[(state, self.project_id)] -= n
            d[(state, None)] += n
        return d


@dataclass(frozen=True)
class ProjectMembershipChanged(Event):
    project_id: uuid.UUID
    user_id: uuid.UUID
    added: bool


def net_deltas(events: list[Event]) -> dict[Cell, int]:
    """The combined, non-zero cell deltas of events applied in order."""
    total: Counter[Cell] = Counter()
    for event in events:
        total.update(event.deltas())
    return {cell: n for cell, n in total.items() if n}
