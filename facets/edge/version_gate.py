"""426 ``upgrade_required_error`` for API clients older than ``MIN_CLIENT_VERSION``.

Clients name their version in ``X-Client-Version`` (PEP 440 / semver-like, e.g. ``2.4.1``).
Without ``MIN_CLIENT_VERSION`` nothing is checked; a request without the header (or with a
blank one) always passes, so curl and scripts keep working. A header that is not a version is
a 400 ``invalid_error``. Only ``/api/`` routes are gated, and never a CORS preflight.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from flask import Flask, request
from werkzeug.exceptions import BadRequest, HTTPException

CLIENT_VERSION_HEADER = "X-Client-Version"


class UpgradeRequired(HTTPException):
    """426 Upgrade Required, which werkzeug has no class for."""

    code = 426
    description = "This client is too old; upgrade it."


def parse_minimum(value: str) -> Version:
    """The configured minimum.

    :raise RuntimeError: ``MIN_CLIENT_VERSION`` is not a version.
    """
    try:
        return Version(value)
    except InvalidVersion:
        raise RuntimeError(f"MIN_CLIENT_VERSION={value!r} is not a version like 2.4.1") from None


def check_client_version(minimum: Version) -> None:
    """Refuse the current request if its client is older than ``minimum``.

    :raise 400: the header is not a version.
    :raise 426: the client is older than ``minimum``.
    """
    header = request.headers.get(CLIENT_VERSION_HEADER, "").strip()
    if not header:
        return
    try:
        version = Version(header)
    except (InvalidVersion, ValueError):  # ValueError: over Python's 4,300 digits of an int
        raise BadRequest(f"{CLIENT_VERSION_HEADER} must be a version like 2.4.1.") from None
    if version < minimum:
        raise UpgradeRequired(
            f"Client version {version} is no longer supported; "
            f"upgrade to version {minimum} or later."
        )


def init_app(app: Flask) -> None:
    minimum_setting = app.config.get("MIN_CLIENT_VERSION")
    if not minimum_setting:
        return
    minimum = parse_minimum(minimum_setting)

    @app.before_request
    def gate_client_version() -> None:
        if request.method != "OPTIONS" and request.path.startswith("/api/"):
            check_client_version(minimum)
