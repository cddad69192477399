"""Organizations, users, their memberships and API keys.

An org's ``facet_version`` counts the committed changes to its facets. It is bumped in the
same transaction as every such change, under the org row lock, so version order is commit
order (see ``models.uow`` and ``facets.counts.cache``). Its ``labels_version`` counts the
committed changes to its project labels (project create, rename, delete), bumped in the same
transactions, so the labels at a facet version are the labels at the labels version read with it.
"""

from __future__ import annotations

import enum
import re
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow, uuid_pk

ORG_SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62})$"
_ORG_SLUG = re.compile(ORG_SLUG_PATTERN)
ORG_NAME_MAX = 200
EMAIL_MAX = 320  # RFC 5321's longest path


def is_org_slug(slug: str) -> bool:
    """Whether ``slug`` has the shape every org's slug has (checked when orgs are made)."""
    return _ORG_SLUG.fullmatch(slug) is not None


class Role(enum.StrEnum):
    """What a member may do in an org; owners and admins see every sandbox."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def sees_everything(self) -> bool:
        return self is not Role.MEMBER


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(ORG_NAME_MAX))
    facet_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    labels_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A user. A JWT of theirs issued before ``sessions_revoked_at`` no longer authenticates
    (``flask users revoke-sessions``); the access statement reads it with the membership."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sessions_revoked_at: Mapped[datetime | None]


Index("uq_users_email_lower", func.lower(User.email), unique=True)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("org_id", "user_id"),
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="role"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))


class ApiKey(Base):
    """An API key: the public ``prefix`` finds it, the SHA-256 of the whole key proves it."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
