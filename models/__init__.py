"""The domain and its persistence: typed SQLAlchemy 2 models, session, unit of work."""

from models.access import Access, load_access
from models.base import Base
from models.errors import AlreadyExists, Conflict, DomainError, Forbidden, Invalid, NotFound
from models.org import ApiKey, Membership, Org, Role, User
from models.project import Project, ProjectMember
from models.sandbox import SANDBOX_STATES, Sandbox, SandboxState
from models.session import Database
from models.uow import HookRegistry, OrgCommit, UnitOfWork

__all__ = [
    "Access",
    "AlreadyExists",
    "ApiKey",
    "Base",
    "Conflict",
    "Database",
    "DomainError",
    "Forbidden",
    "HookRegistry",
    "Invalid",
    "Membership",
    "NotFound",
    "Org",
    "OrgCommit",
    "Project",
    "ProjectMember",
    "Role",
    "SANDBOX_STATES",
    "Sandbox",
    "SandboxState",
    "UnitOfWork",
    "User",
    "load_access",
]
