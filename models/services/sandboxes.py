"""Creating, changing and deleting sandboxes.

Old values are read from the row under the org lock, and an event is recorded only for a
change that actually happened. Creates and changes are left to the unit of work's flush, so a
batch (``flask demo``) becomes a few multi-row statements instead of one round trip per call.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete

from models.access import Access
from models.base import utcnow
from models.errors import Conflict, Invalid, NotFound
from models.events import SandboxCreated, SandboxDeleted, SandboxMoved, SandboxStateChanged
from models.sandbox import Sandbox, SandboxState
from models.services.common import UNSET, Unset, placeable_project
from models.uow import UnitOfWork

CREATABLE_STATES = (SandboxState.RUNNING.value, SandboxState.PAUSED.value)


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
    placeable_project(uow, access, project_id)
    now = utcnow()
    sandbox = Sandbox(
        id=uuid.uuid4(),
        org_id=access.org_id,
        project_id=project_id,
        state=state,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(sandbox)
    uow.record(SandboxCreated(access.org_id, sandbox.id, state, project_id))
    return sandbox


def get_visible_sandbox(uow: UnitOfWork, *, access: Access, sandbox_id: uuid.UUID) -> Sandbox:
    """The sandbox if it is in the org and visible to the caller, else NotFound."""
    sandbox = uow.session.get(Sandbox, sandbox_id)
    if (
        sandbox is None
        or sandbox.org_id != access.org_id
        or not access.sees_project(sandbox.project_id)
    ):
        raise NotFound("Sandbox not found.")
    return sandbox


def update_sandbox(
    uow: UnitOfWork,
    *,
    access: Access,
    sandbox_id: uuid.UUID,
    state: str | Unset = UNSET,
    project_id: uuid.UUID | None | Unset = UNSET,
) -> Sandbox:
    """Change a sandbox's state and/or project; a killed sandbox cannot change."""
    sandbox = get_visible_sandbox(uow, access=access, sandbox_id=sandbox_id)
    new_state = sandbox.state if state is UNSET else state
    new_project = sandbox.project_id if project_id is UNSET else project_id
    if new_state not in {s.value for s in SandboxState}:
        raise Invalid(f"Unknown sandbox state '{new_state}'.")
    if (new_state, new_project) == (sandbox.state, sandbox.project_id):
        return sandbox
    if sandbox.state == SandboxState.KILLED:
        raise Conflict("This sandbox is killed; a killed sandbox cannot be changed.")
    if new_project != sandbox.project_id:
        placeable_project(uow, access, new_project)
    old_state, old_project = sandbox.state, sandbox.project_id
    sandbox.state, sandbox.project_id, sandbox.updated_at = new_state, new_project, utcnow()
    if new_state != old_state:
        uow.record(
            SandboxStateChanged(access.org_id, sandbox.id, old_project, old_state, new_state)
        )
    if new_project != old_project:
        uow.record(SandboxMoved(access.org_id, sandbox.id, new_state, old_project, new_project))
    return sandbox


def delete_sandbox(uow: UnitOfWork, *, access: Access, sandbox_id: uuid.UUID) -> None:
    """Delete a visible sandbox; the event carries the state and project it had."""
    sandbox = get_visible_sandbox(uow, access=access, sandbox_id=sandbox_id)
    deleted = uow.session.execute(
        delete(Sandbox)
        .where(Sandbox.id == sandbox.id)
        .returning(Sandbox.state, Sandbox.project_id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if deleted is None:
        raise NotFound("Sandbox not found.")
    uow.session.expunge(sandbox)
    uow.record(SandboxDeleted(access.org_id, sandbox.id, deleted.state, deleted.project_id))
