"""Orgs, users, memberships and API keys: the admin side, driven by the CLI."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from models.access import org_not_found
from models.base import utcnow
from models.errors import AlreadyExists, Invalid, NotFound
from models.org import (
    EMAIL_MAX,
    ORG_NAME_MAX,
    ApiKey,
    Membership,
    Org,
    Role,
    User,
    is_org_slug,
)
from models.uow import UnitOfWork

API_KEY_PREFIX = "sk_"
API_KEY_PREFIX_LEN = len(API_KEY_PREFIX) + 8
# The public prefix of every issued key (``create_api_key``: 4 random bytes in hex).
API_KEY_PREFIX_SHAPE = re.compile(re.escape(API_KEY_PREFIX) + "[0-9a-f]{8}")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which a key's secret is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_sha256: str) -> bool:
    """Constant-time check of a presented key against its stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def create_org(uow: UnitOfWork, *, slug: str, name: str | None = None) -> Org:
    """Create an org with a unique slug."""
    if not is_org_slug(slug):
        raise Invalid(f"Invalid org slug '{slug}': use lowercase letters, digits and '-'.")
    if name is not None and len(name) > ORG_NAME_MAX:
        raise Invalid(f"An org name has at most {ORG_NAME_MAX} characters.")
    if uow.session.scalar(select(Org.id).where(Org.slug == slug)) is not None:
        raise AlreadyExists(f"An org with slug '{slug}' already exists.")
    org = Org(slug=slug, name=name or slug)
    uow.session.add(org)
    uow.session.flush()
    return org


def create_user(uow: UnitOfWork, *, email: str) -> User:
    """Create a user; emails are unique case-insensitively."""
    email = email.strip()
    if len(email) > EMAIL_MAX or not EMAIL_PATTERN.fullmatch(email):
        raise Invalid(f"Invalid email address '{email}'.")
    if find_user(uow, email=email) is not None:
        raise AlreadyExists(f"A user with email '{email}' already exists.")
    user = User(email=email)
    uow.session.add(user)
    uow.session.flush()
    return user


def find_user(uow: UnitOfWork, *, email: str) -> User | None:
    """The user with this email (any case), if any."""
    return uow.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def get_user(uow: UnitOfWork, *, email: str) -> User:
    """The user with this email, or NotFound."""
    user = find_user(uow, email=email)
    if user is None:
        raise NotFound(f"No user with email '{email}'.")
    return user


def get_org(uow: UnitOfWork, *, slug: str) -> Org:
    """The org with this slug, or NotFound."""
    org = uow.session.scalar(select(Org).where(Org.slug == slug))
    if org is None:
        raise org_not_found(slug)
    return org


def add_member(uow: UnitOfWork, *, org_slug: str, email: str, role: Role) -> Membership:
    """Make a user a member of an org with a role, or change the role they have."""
    org = get_org(uow, slug=org_slug)
    user = get_user(uow, email=email)
    membership = uow.session.scalar(
        select(Membership).where(Membership.org_id == org.id, Membership.user_id == user.id)
    )
    if membership is None:
        membership = Membership(org_id=org.id, user_id=user.id, role=role.value)
        uow.session.add(membership)
    else:
        membership.role = role.value
    uow.session.flush()
    return membership


@dataclass(frozen=True)
class IssuedKey:
    """A newly issued API key: ``key`` is shown once and never stored."""

    key: str
    prefix: str
    user_id: uuid.UUID


def create_api_key(
    uow: UnitOfWork, *, email: str, expires_in: timedelta | None = None
) -> IssuedKey:
    """Issue an API key for a user; only its prefix and hash are stored."""
    user = get_user(uow, email=email)
    for _ in range(5):
        prefix = API_KEY_PREFIX + secrets.token_hex(4)
        key = prefix + "_" + secrets.token_urlsafe(32)
        row = ApiKey(
            user_id=user.id,
            prefix=prefix,
            secret_sha256=hash_secret(key),
            expires_at=utcnow() + expires_in if expires_in is not None else None,
        )
        try:
            with uow.session.begin_nested():
                uow.session.add(row)
        except IntegrityError:  # prefix collision: draw again
            continue
        return IssuedKey(key, prefix, user.id)
    raise RuntimeError("could not draw a unique API key prefix")


def revoke_api_key(uow: UnitOfWork, *, prefix: str, at: datetime | None = None) -> ApiKey:
    """Revoke the key with this prefix (revoking twice keeps the first time)."""
    row = uow.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        raise NotFound(f"No API key with prefix '{prefix}'.")
    if row.revoked_at is None:
        row.revoked_at = at or utcnow()
    return row


@dataclass(frozen=True)
class RevokedSessions:
    """What ``revoke_sessions`` ended: JWTs issued up to ``at``, and how many API keys."""

    at: datetime
    api_keys: int


def revoke_sessions(
    uow: UnitOfWork, *, email: str, api_keys: bool = False, at: datetime | None = None
) -> RevokedSessions:
    """End every JWT of the user issued up to now (and with ``api_keys`` every live API key).

    The next request of any process refuses them: the time is the user's
    ``sessions_revoked_at``, read with the membership by the request's access statement.
    """
    user = get_user(uow, email=email)
    when = at or utcnow()
    user.sessions_revoked_at = when
    keys = 0
    if api_keys:
        keys = uow.session.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=when)
            .execution_options(synchronize_session=False)
        ).rowcount
    uow.session.flush()
    return RevokedSessions(when, keys)


def api_key_prefix(key_or_prefix: str) -> str:
    """The public prefix of a whole API key, or the prefix itself (``sk_`` + 8 hex digits)."""
    return key_or_prefix.strip()[:API_KEY_PREFIX_LEN]
