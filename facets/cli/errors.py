"""One line on stderr, never a traceback, for what an admin command can run into.

Every admin command group and command is built on ``OneLineErrors``: click's usage mistakes
(bad option values, missing arguments, unknown commands) and any database error (unreachable,
no answer in time, a missing table before ``flask db upgrade``, a unique index met by a
concurrent command) end the command with one line: exit status 2 for click's usage mistakes
(its own status, kept), 1 for the rest, as a domain error or an unreachable Redis already do.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import AppGroup

if TYPE_CHECKING:
    from sqlalchemy.exc import DBAPIError

# ``app.extensions`` key of the setup an ``admin_only`` app leaves for its first command.
DEFERRED_SETUP = "facets.deferred_setup"


def database_error_line(error: DBAPIError) -> str:
    """What an admin reads when the database failed a command.

    A message the server sent (it carries a SQLSTATE) or SQLite's is shown, first line only;
    a connection error raised by the client is named by its type alone, because the client
    can quote the URL it was given, password included (psycopg's host lookup does, when an
    unescaped ``@`` in the password moves part of it into the host).
    """
    from models.session import is_time_limit

    if is_time_limit(error):
        return "The database did not answer in time (a lock held elsewhere?); retry shortly."
    orig = error.orig
    kind = type(orig).__name__
    if getattr(orig, "sqlstate", None) is None and type(orig).__module__ != "sqlite3":
        return f"The database is unreachable: {kind}."
    lines = str(orig).strip().splitlines()
    return f"Database error ({kind}): {lines[0] if lines else 'no message'}"


def setup_without_collecting(setup) -> None:
    """Run ``setup`` (the imports and extensions of a command) with the cyclic GC paused.

    Importing SQLAlchemy, psycopg and redis allocates hundreds of thousands of objects that live
    as long as the process, and the collector would walk them again and again while they are
    made (a third of ``flask facets verify --org X``'s start-up). What the setup made is then
    frozen, so later collections during the command skip it too.
    """
    gc.disable()
    try:
        setup()
    finally:
        gc.freeze()
        gc.enable()


class OneLineErrors:
    """Mixin for click commands and groups: usage and database errors on one line; the app's
    deferred setup (if any) runs first."""

    def invoke(self, ctx: click.Context):
        if current_app and DEFERRED_SETUP in current_app.extensions:
            setup_without_collecting(current_app.extensions.pop(DEFERRED_SETUP))
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            error = click.ClickException(" ".join(exc.format_message().split()))
            error.exit_code = exc.exit_code
            raise error from None
        except Exception as exc:
            from sqlalchemy.exc import DBAPIError

            if isinstance(exc, DBAPIError):
                raise click.ClickException(database_error_line(exc)) from None
            raise


class OneLineGroup(OneLineErrors, AppGroup):
    """An ``AppGroup`` whose commands report their errors on one line."""


class OneLineCommand(OneLineErrors, click.Command):
    """A command that reports its errors on one line."""
