"""Creating, changing and deleting sandboxes.

Each write is one ``LockedWrite`` (``models.services.sandbox_sql``): the org lock, the caller's
standing and the sandbox's old values are read under that lock by the same statement that
changes the row (and, on PostgreSQL, bumps the org's version), so the lock is held for one
round trip; each is ``@one_statement``, so a unit of work opened for it alone commits as the
statement ends. An event is recorded only for a change that happened, from the old values that
statement read.
"""

from __future__ import annotations

import uuid

from models.access import Access
from models.base import utcnow
from models.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from models.events import SandboxCreated, SandboxDeleted, SandboxMoved, SandboxStateChanged
from models.sandbox import SANDBOX_STATES, Sandbox, SandboxState
from models.services import sandbox_sql
from models.services.common import UNSET, Unset
from models.uow import UnitOfWork, one_statement

CREATABLE_STATES = (SandboxState.RUNNING.value, SandboxState.PAUSED.value)

# what each refusing outcome of a sandbox write answers
REFUSALS: dict[str, tuple[type[DomainError], str]] = {
    "org_not_found": (NotFound, "Organization not found."),
    "not_a_member": (Forbidden, "You are not a member of this organization."),
    "sandbox_not_found": (NotFound, "Sandbox not found."),
    "killed": (Conflict, "This sandbox is killed; a killed sandbox cannot be changed."),
    "project_not_found": (NotFound, "Project not found."),
    # a project the caller is not in is answered as absent, like an unknown id: a different
    # answer would tell a member which project ids exist
    "not_placeable": (NotFound, "Project not found."),
}


def _run(uow: UnitOfWork, access: Access, write, **params):
    """Run a sandbox write as the caller; its facts, or the refusal its outcome names."""
    vouched = access.role.value if uow.vouches_for(access.org_id) else None
    params = {"user_id": access.user_id, "vouched_role": vouched, **params}
    facts = uow.run(access.org_id, write, {f"w_{name}": v for name, v in params.items()})
    if facts.outcome in REFUSALS:
        error, detail = REFUSALS[facts.outcome]
        raise error(detail)
    return facts


@one_statement
def create_sandbox(
    uow: UnitOfWork,
    *,
    access: Access,
    project_id: uuid.UUID | None = None,
    state: str = SandboxState.RUNNING.value,
) -> Sandbox:
    """Create a sandbox, running or paused, in a project the caller may use or in none."""
    if state not in CREATABLE_STATES:
        raise Invalid(f"A new sandbox must be one of: {', '.join(CREATABLE_STATES)}.")
    sandbox_id, now = uuid.uuid4(), utcnow()
    _run(
        uow,
        access,
        sandbox_sql.CREATE,
        sandbox_id=sandbox_id,
        project_id=project_id,
        state=state,
        now=now,
    )
    uow.record(SandboxCreated(access.org_id, sandbox_id, state, project_id))
    return Sandbox(
        id=sandbox_id,
        org_id=access.org_id,
        project_id=project_id,
        state=state,
        created_at=now,
        updated_at=now,
    )


@one_statement
def update_sandbox(
    uow: UnitOfWork,
    *,
    access: Access,
    sandbox_id: uuid.UUID,
    state: str | Unset = UNSET,
    project_id: uuid.UUID | None | Unset = UNSET,
) -> Sandbox:
    """Change a sandbox's state and/or project; a killed sandbox cannot change."""
    if state is not UNSET and state not in SANDBOX_STATES:
        raise Invalid(f"Unknown sandbox state '{state}'.")
    now = utcnow()
    facts = _run(
        uow,
        access,
        sandbox_sql.UPDATE,
        sandbox_id=sandbox_id,
        set_state=state is not UNSET,
        state=None if state is UNSET else state,
        set_project=project_id is not UNSET,
        project_id=None if project_id is UNSET else project_id,
        now=now,
    )
    old_state, old_project = facts.old_state, facts.old_project
    new_state, new_project = facts.new_state, facts.new_project
    sandbox = Sandbox(
        id=sandbox_id,
        org_id=access.org_id,
        project_id=new_project,
        state=new_state,
        created_at=facts.created_at,
        updated_at=now,
    )
    if facts.outcome == "unchanged":
        sandbox.updated_at = facts.updated_at
        return sandbox
    if new_state != old_state:
        uow.record(
            SandboxStateChanged(access.org_id, sandbox_id, old_project, old_state, new_state)
        )
    if new_project != old_project:
        uow.record(SandboxMoved(access.org_id, sandbox_id, new_state, old_project, new_project))
    return sandbox


@one_statement
def delete_sandbox(uow: UnitOfWork, *, access: Access, sandbox_id: uuid.UUID) -> None:
    """Delete a visible sandbox; the event carries the state and project it had."""
    facts = _run(uow, access, sandbox_sql.DELETE, sandbox_id=sandbox_id)
    uow.record(SandboxDeleted(access.org_id, sandbox_id, facts.old_state, facts.old_project))
