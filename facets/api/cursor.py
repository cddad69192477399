"""Opaque, signed pagination cursors for the sandbox list.

A cursor carries the ``(created_at, id)`` key of the last sandbox of a page. It is signed with
a key derived from ``JWT_SECRET`` (its own salt, so a cursor is never a valid token and vice
versa); anything that does not verify or decode is a caller error, never a 500.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer

from models import Invalid
from models.queries import SandboxKey

CURSOR_SALT = "facets.sandbox-list-cursor"


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["JWT_SECRET"], salt=CURSOR_SALT)


def encode_cursor(key: SandboxKey) -> str:
    """The cursor that resumes the list after the sandbox with this key."""
    created_at, sandbox_id = key
    return _serializer().dumps([created_at.isoformat(), sandbox_id.hex])


def decode_cursor(cursor: str) -> SandboxKey:
    """The key a cursor resumes after.

    :raise Invalid: the cursor was not issued by this service, or was altered.
    """
    try:
        created_at, sandbox_id = _serializer().loads(cursor)
        key = (datetime.fromisoformat(created_at), uuid.UUID(hex=sandbox_id))
    except (BadData, AttributeError, TypeError, ValueError):
        key = None
    if key is None or key[0].tzinfo is None:
        raise Invalid("Invalid cursor; start again from the first page.")
    return key
