"""The admin CLI: ``flask orgs|users|members|tokens|db ...``, ``flask facets verify|rebuild``
and ``flask demo``, with one-line errors.

May import every other room; nothing imports it but the app factory, which registers it.
"""

from flask import Flask

from facets.cli import cache, commands


def init_app(app: Flask) -> None:
    """Register every command group on ``app``."""
    commands.init_app(app)
    cache.init_app(app)
