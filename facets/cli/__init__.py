"""The admin CLI: ``flask orgs|users|members|tokens|db ...``, ``flask facets verify|rebuild``
and ``flask demo``, with one-line errors.

May import every other room; nothing imports it but the app factory, which registers it.
The command modules import what a command needs in its body, so that ``flask --help`` stays
light; an app built ``admin_only`` leaves ``DEFERRED_SETUP`` for the first command to run.
"""

from flask import Flask

from facets.cli import cache, commands
from facets.cli.errors import DEFERRED_SETUP

__all__ = ["DEFERRED_SETUP", "init_app"]


def init_app(app: Flask) -> None:
    """Register every command group on ``app``."""
    commands.init_app(app)
    cache.init_app(app)
