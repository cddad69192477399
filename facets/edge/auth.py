"""Bearer authentication: API keys (``sk_...``) and HS256 JWTs.

API keys are found by their public prefix and checked against the stored SHA-256 with a
constant-time compare. A JWT must carry ``sub``, ``iat`` and ``exp``, live at most
``JWT_MAX_AGE_S`` (``exp - iat``), and be issued after its user's ``sessions_revoked_at``,
which the org access statement reads with the membership (``require_live_session``: no
extra round trip). Credentials never reach a log line or an error body.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from sqlalchemy.exc import DBAPIError

from flask import current_app, g, request

from facets.errors import HTTPError
from models import Access, DomainError
from models.access import read_api_key, read_key_access
from models.base import utcnow
from models.services.accounts import (
    API_KEY_PREFIX,
    API_KEY_PREFIX_LEN,
    API_KEY_PREFIX_SHAPE,
    secret_matches,
)

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Methods whose views only read: their caller's access can be read with the API key.
READ_METHODS = frozenset({"GET", "HEAD"})


class AuthenticationError(HTTPError):
    status = 401
    type = "authentication_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, BEARER_CHALLENGE)


class ExpiredTokenError(AuthenticationError):
    type = "expired_token_error"


class ExpiredSignatureError(AuthenticationError):
    type = "expired_signature_error"


class TokenError(AuthenticationError):
    type = "token_error"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user, and by which kind of credential."""

    user_id: uuid.UUID
    via: str  # "key" or "user"
    credential_id: str  # the API key's public prefix, or the JWT's subject
    issued_at: datetime | None = None  # a JWT's ``iat``; None for an API key


def bearer_credential() -> str:
    """The credential of the ``Authorization: Bearer`` header.

    :raise AuthenticationError: no header, or not a Bearer one.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationError("Send 'Authorization: Bearer <API key or JWT>'.")
    return credential.strip()


ACCESS_OUTCOME_KEY = "facets.access_outcome"


def verified_key(key: str, row) -> Principal:
    """The principal of ``key`` given its stored row (None: no key has its prefix)."""
    if row is None or not secret_matches(key, row.secret_sha256) or row.revoked_at is not None:
        raise AuthenticationError("Invalid or revoked API key.")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise ExpiredTokenError("This API key has expired; create a new one.")
    return Principal(row.user_id, "key", key[:API_KEY_PREFIX_LEN])


def authenticate_api_key(key: str) -> Principal:
    """The owner of a live API key.

    On an org-scoped request the owner's access to that org comes in the same statement (one
    round trip for both); it waits in the request for ``prefetched_access`` (a read's view, or
    a write's first check before it queues for its org).
    """
    from facets.extensions import state

    prefix = key[:API_KEY_PREFIX_LEN]
    if not API_KEY_PREFIX_SHAPE.fullmatch(prefix):  # no key was issued with it: no lookup
        raise AuthenticationError("Invalid or revoked API key.")
    org_slug = (request.view_args or {}).get("org")
    db = state().db
    if org_slug is None:
        return verified_key(key, read_api_key(db, prefix))
    row = read_key_access(db, org_slug, prefix)
    principal = verified_key(key, row)
    request.environ[ACCESS_OUTCOME_KEY] = (org_slug, principal.user_id, row.access)
    return principal


def prefetched_access(org_slug: str, user_id: uuid.UUID) -> Access | None:
    """The caller's access to ``org_slug`` read with their API key, once; None if there is none.

    :raise DomainError: the org's absence or the caller's non-membership, as read then.
    """
    outcome = request.environ.pop(ACCESS_OUTCOME_KEY, None)
    if outcome is None or outcome[:2] != (org_slug, user_id):
        return None
    if isinstance(outcome[2], DomainError):
        raise outcome[2]
    return outcome[2]


def authenticate_jwt(token: str) -> Principal:
    """The subject of a valid HS256 JWT with ``sub``, ``iat`` and ``exp`` that lives at most
    ``JWT_MAX_AGE_S`` (whether its user's sessions were revoked is checked with the access)."""
    try:
        claims = jwt.decode(
            token,
            current_app.config["JWT_SECRET"],
            algorithms=["HS256"],
            options={"require": ["exp", "iat", "sub"]},
        )
        user_id = uuid.UUID(str(claims["sub"]))
        issued, expires = int(claims["iat"]), int(claims["exp"])  # as PyJWT read them
    except jwt.ExpiredSignatureError:
        raise ExpiredSignatureError("The token has expired; sign in again.") from None
    except (jwt.InvalidTokenError, ValueError):
        raise TokenError("The token is malformed, badly signed or missing claims.") from None
    max_age = current_app.config["JWT_MAX_AGE_S"]
    if expires - issued > max_age:
        raise TokenError(f"The token lives longer than {max_age} s (exp - iat); sign in again.")
    return Principal(user_id, "user", str(user_id), datetime.fromtimestamp(issued, UTC))


def require_live_session(access: Access) -> Access:
    """``access`` if the caller's credential still stands: a JWT issued before its user's
    ``sessions_revoked_at`` does not (revoked API keys are refused with the key itself).

    :raise TokenError: the JWT was issued before the user's sessions were revoked.
    """
    issued, revoked = current_principal().issued_at, access.sessions_revoked_at
    # ``iat`` has whole seconds: a token of the revocation's second counts as before it.
    if issued is not None and revoked is not None and issued <= revoked:
        raise TokenError("This token's sessions were revoked; sign in again.")
    return access


AUTH_OUTCOME_KEY = "facets.auth_outcome"


def authenticate() -> Principal:
    """Authenticate the current request from its bearer credential, once per request.

    The rate limiter identifies the caller before the view authenticates; the second call is
    answered with the first one's outcome (the principal, the same authentication error, or
    the database error that stopped the first, a time limit or an unreachable server, which
    the view then answers for without waiting again; a dropped connection is not kept, as
    the pool reconnects on the next try).
    The outcome is kept in the request's WSGI environ, not in ``g``: an app context (and its
    ``g``) can outlive one request, and an outcome must never answer another request.
    """
    outcome = request.environ.get(AUTH_OUTCOME_KEY)
    if outcome is None:
        try:
            credential = bearer_credential()
            if credential.startswith(API_KEY_PREFIX):
                outcome = authenticate_api_key(credential)
            else:
                outcome = authenticate_jwt(credential)
        except AuthenticationError as exc:
            outcome = exc
        except DBAPIError as exc:
            if exc.connection_invalidated:  # a dropped pooled connection: the next try reconnects
                raise
            outcome = exc
        request.environ[AUTH_OUTCOME_KEY] = outcome
    if isinstance(outcome, AuthenticationError):
        raise type(outcome)(outcome.detail)
    if isinstance(outcome, DBAPIError):  # the database failed once: no second wait on it
        raise outcome
    return outcome


def login_required(view):
    """Authenticate before anything else in the view runs (so 401 comes before 422)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.principal = authenticate()
        return view(*args, **kwargs)

    return wrapper


def current_principal() -> Principal:
    """The principal ``login_required`` authenticated."""
    return g.principal
