"""Entry point: ``flask run`` (and gunicorn's ``app:create_app()``) build the app here.

Under the ``flask`` command, for one of the service's admin commands or the command list
(``flask --help``), the app is built ``admin_only``: the commands start without importing the
HTTP rooms (see ``facets.create_app``). Any other process or command (``flask run``,
``routes``, ``shell``, gunicorn) gets the whole app.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Flask

from facets import create_app as build_app

ADMIN_COMMANDS = frozenset({"db", "orgs", "users", "members", "tokens", "facets", "demo"})
# ``flask``'s own options that take a value (the command is the first word after them).
VALUE_OPTIONS = frozenset({"-e", "--env-file", "-A", "--app"})


def admin_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is the ``flask`` command running an admin command or listing them."""
    program = os.path.basename(argv[0]) if argv else ""
    if program != "flask" and not argv[0].endswith(os.path.join("flask", "__main__.py")):
        return False
    words = iter(argv[1:])
    for word in words:
        if word in VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word in ADMIN_COMMANDS
    return True  # no command: the list


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app; see the module docstring for when it is built ``admin_only``."""
    return build_app(config, admin_only=admin_command(sys.argv))


__all__ = ["create_app"]
