"""One line on stderr, never a traceback, for what an admin command can run into.

Every admin command group and command is built on ``OneLineErrors``: click's usage mistakes
(bad option values, missing arguments, unknown commands) and any database error (unreachable,
no answer in time, a missing table before ``flask db upgrade``, a unique index met by a
concurrent command) end the command with one line and exit status 1, as a domain error or an
unreachable Redis already do.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

import click
from flask.cli import AppGroup

from models.session import is_time_limit


def database_error_line(error: DBAPIError) -> str:
    """What an admin reads when the database failed a command: the driver's error type and
    the first line of its message (libpq's never holds a password)."""
    if is_time_limit(error):
        return "The database did not answer in time (a lock held elsewhere?); retry shortly."
    lines = str(error.orig).strip().splitlines()
    return f"Database error ({type(error.orig).__name__}): {lines[0] if lines else 'no message'}"


class OneLineErrors:
    """Mixin for click commands and groups: usage and database errors on one line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            error = click.ClickException(" ".join(exc.format_message().split()))
            error.exit_code = exc.exit_code
            raise error from None
        except DBAPIError as exc:
            raise click.ClickException(database_error_line(exc)) from None


class OneLineGroup(OneLineErrors, AppGroup):
    """An ``AppGroup`` whose commands report their errors on one line."""


class OneLineCommand(OneLineErrors, click.Command):
    """A command that reports its errors on one line."""
