"""A write that locks its org, checks, changes and bumps the org's version in one statement.

A ``LockedWrite`` is a one-row ``facts`` CTE (the org's locked version, the old values, and an
``outcome``: ``'ok'`` or why the write is refused) and a ``change`` guarded by
``outcome = 'ok'``. ``UnitOfWork.run`` executes it:

- on PostgreSQL as ONE statement, ``statement()``: facts, change and the version bump as CTEs.
  The org row lock is taken inside it, so it is held for that statement and the commit only.
  The bump happens only when the change touched a row and the unit of work has not bumped the
  org yet (``:bump``), so a unit of work still bumps each org it changed exactly once;
- on SQLite (no data-modifying CTEs; ``BEGIN IMMEDIATE`` already serializes writers) as
  ``facts`` then ``change``, the unit of work bumping at commit as for any other write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import CTE, Boolean, Select, bindparam, cast, exists, func, select, update
from sqlalchemy.sql.dml import UpdateBase

from models.org import Org

_ORGS = Org.__table__
_UUID = _ORGS.c.id.type
ORG_ID = cast(bindparam("w_org_id", type_=_UUID), _UUID)
BUMP = bindparam("w_bump", type_=Boolean())


@dataclass(frozen=True)
class LockedWrite:
    facts: CTE
    change: UpdateBase  # INSERT/UPDATE/DELETE ... RETURNING, guarded by facts.outcome = 'ok'
    single: Select = field(init=False)

    def __post_init__(self) -> None:
        changed = self.change.cte("change")
        bump = (
            update(_ORGS)
            .where(_ORGS.c.id == ORG_ID, BUMP, exists(select(changed.c.id)))
            .values(facet_version=_ORGS.c.facet_version + 1)
            .returning(_ORGS.c.facet_version)
            .cte("bump")
        )
        single = select(
            *self.facts.c,
            select(func.count()).select_from(changed).scalar_subquery().label("changed"),
            select(bump.c.facet_version).scalar_subquery().label("bumped_version"),
        )
        object.__setattr__(self, "single", single)
