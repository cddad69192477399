"""Configuration from the environment, with defaults that work on a fresh machine.

Every key is documented in the README's configuration table. ``create_app(config)`` applies a
mapping on top (tests use it); nothing else reads the environment.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)

EMBEDDED_REDIS_URL = "fakeredis://"


def default_database_url(instance_path: str) -> str:
    """A SQLite file in the app's instance folder."""
    return f"sqlite:///{Path(instance_path) / 'facets.sqlite3'}"


def _flag(value: str) -> bool:
    """An environment switch: 1/true/yes/on (any case) is on."""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def split_list(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """A comma-separated setting as a list without blanks (a list passes through)."""
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]


def from_environment(instance_path: str) -> dict[str, Any]:
    """The settings the environment gives, with working local defaults."""
    env = os.environ
    return {
        "FACETS_ENV": env.get("FACETS_ENV", "development"),
        "DATABASE_URL": env.get("DATABASE_URL") or default_database_url(instance_path),
        "REDIS_URL": env.get("REDIS_URL") or EMBEDDED_REDIS_URL,
        "JWT_SECRET": env.get("JWT_SECRET"),
        # The longest a JWT may live (its exp - iat), in seconds.
        "JWT_MAX_AGE_S": int(env.get("JWT_MAX_AGE_S", "86400")),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        "RECOUNT_TIMEOUT_MS": int(env.get("RECOUNT_TIMEOUT_MS", "2000")),
        # PostgreSQL only: the longest the app waits to connect, for a lock (any statement),
        # and on a per-request read (models.session.Database).
        "DB_CONNECT_TIMEOUT_S": int(env.get("DB_CONNECT_TIMEOUT_S", "3")),
        "DB_LOCK_TIMEOUT_MS": int(env.get("DB_LOCK_TIMEOUT_MS", "5000")),
        "DB_STATEMENT_TIMEOUT_MS": int(env.get("DB_STATEMENT_TIMEOUT_MS", "5000")),
        # the most projects one org may have (creating one more is a 409)
        "MAX_PROJECTS_PER_ORG": int(env.get("MAX_PROJECTS_PER_ORG", "1000")),
        # one org's writes in flight per process, and how long the next waits before its 429
        # (facets.edge.org_writes): keep below GUNICORN_THREADS, so other orgs keep a thread
        "ORG_WRITES_IN_FLIGHT": int(env.get("ORG_WRITES_IN_FLIGHT", "1")),
        "ORG_WRITE_WAIT_MS": int(env.get("ORG_WRITE_WAIT_MS", "0")),
        "FACETS_BODY_MEMO_BYTES": int(env.get("FACETS_BODY_MEMO_BYTES", str(32 * 1024 * 1024))),
        # Waiting reads also reread their orgs' versions this often (a lost notification).
        "WATCH_RECHECK_S": float(env.get("WATCH_RECHECK_S", "3")),
        # Rate limits per caller (the authenticated user, else the client address).
        # Unset: on, except in an app built with TESTING (limits are tested on purpose).
        "RATE_LIMITS_ENABLED": (
            _flag(env["RATE_LIMITS_ENABLED"]) if env.get("RATE_LIMITS_ENABLED") else None
        ),
        "FACETS_RATE_LIMIT": env.get("FACETS_RATE_LIMIT", "50/second;1200/minute"),
        "READ_RATE_LIMIT": env.get("READ_RATE_LIMIT", "50/second;1200/minute"),
        "MUTATION_RATE_LIMIT": env.get("MUTATION_RATE_LIMIT", "20/second;600/minute"),
        "MIN_CLIENT_VERSION": env.get("MIN_CLIENT_VERSION") or None,
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        "METRICS_PUBLIC": _flag(env.get("METRICS_PUBLIC", "false")),
        "CORS_ORIGINS": split_list(env.get("CORS_ORIGINS", "")),
        # Flask's own key: a bigger request body is refused (413) before it is read.
        "MAX_CONTENT_LENGTH": int(env.get("MAX_CONTENT_LENGTH", str(64 * 1024))),
    }


def finalize(config: dict[str, Any]) -> None:
    """Fill derived settings and refuse unsafe ones.

    :raise RuntimeError: production without a ``JWT_SECRET``, or an unknown ``LOG_LEVEL``.
    """
    level = str(config.get("LOG_LEVEL") or "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        raise RuntimeError(f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR; got {level!r}")
    config["LOG_LEVEL"] = level
    if not config.get("JWT_SECRET"):
        if config.get("FACETS_ENV") == "production":
            raise RuntimeError("JWT_SECRET must be set when FACETS_ENV=production")
        config["JWT_SECRET"] = secrets.token_urlsafe(32)
        config["JWT_SECRET_IS_RANDOM"] = True


def is_embedded_redis(url: str) -> bool:
    """Whether ``REDIS_URL`` names an in-process Redis, which only its own process sees."""
    return url.startswith(EMBEDDED_REDIS_URL)


def starts_a_server() -> bool:
    """Whether this process builds the app to serve it: under a WSGI server (no click command
    runs) or ``flask run``; not for an admin command or ``flask --help``."""
    ctx = click.get_current_context(silent=True)
    return ctx is None or ctx.command.name == "run"


# Set by gunicorn's master (gunicorn.conf.py) once it has said what a default costs, so that
# its workers, which inherit it, do not say it again each.
STARTUP_WARNED_ENV = "FACETS_STARTUP_WARNED"
RANDOM_JWT_SECRET_WARNING = (
    "JWT_SECRET is not set: using a random secret; JWTs die with this process"
)


def warn_at_server_start(config: Mapping[str, Any]) -> None:
    """Log once, where the server starts, what a development default costs."""
    if os.environ.get(STARTUP_WARNED_ENV):
        return
    if config.get("JWT_SECRET_IS_RANDOM") and starts_a_server():
        log.warning(RANDOM_JWT_SECRET_WARNING)


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
