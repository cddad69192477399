"""The sandbox facets service: the app factory and the rooms it assembles.

- ``facets.api``: the HTTP contract (blueprint, views, schemas, cursors, OpenAPI docs);
- ``facets.counts``: the counts engine (read path, counter cache, labels, body memo, ETag);
- ``facets.edge``: what guards the edge (auth, rate limits, version gate, request ids, headers);
- ``facets.ops``: operations (request log, metrics, health probes);
- ``facets.cli``: the admin commands.

At the top stay what every room shares: ``config`` (settings from the environment),
``extensions`` (database, Redis, cache and hooks of one app), ``errors`` (the one error
envelope) and ``json`` (request and response bodies). Dependencies point one way: ``api`` and
``cli`` use ``edge`` and ``counts``; ``counts`` imports none of them; only this factory imports
``cli``. ``pyproject.toml``'s import-linter contracts keep it so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

# The rooms are imported inside ``create_app``: importing ``facets.config`` or ``facets.cli``
# (the ``flask`` command, before it knows which command runs) must not load them all.


def create_app(config: Mapping[str, Any] | None = None, *, admin_only: bool = False) -> Flask:
    """Build the app: settings from the environment, then ``config`` on top.

    With ``admin_only`` (``app.py`` under the ``flask`` command, for an admin command or the
    command list) the app gets its settings and commands only; the extensions are built by the
    same code when a command starts (``facets.cli.errors``), and the HTTP rooms, which such a
    process never serves, are left out. ``flask --help`` then imports none of them.
    """
    from facets import cli
    from facets import config as config_module

    app = Flask(__name__, instance_relative_config=True)
    settings = config_module.from_environment(app.instance_path)
    settings.update(config or {})
    config_module.finalize(settings)
    app.config.from_mapping(settings)
    os.makedirs(app.instance_path, exist_ok=True)
    logging.getLogger("facets").setLevel(app.config["LOG_LEVEL"])
    config_module.warn_at_server_start(app.config)
    cli.init_app(app)
    if admin_only:
        app.extensions[cli.DEFERRED_SETUP] = lambda: _init_extensions(app, http=False)
        return app
    _init_extensions(app, http=True)
    _init_http(app)
    return app


def _init_extensions(app: Flask, *, http: bool) -> None:
    """The extensions; and with ``http`` the JSON provider and the OpenAPI ``Api``, which an
    admin command, serving no request, goes without (flask-smorest and the views are a third
    of its start-up)."""
    from facets import extensions

    if not http:
        extensions.init_app(app, None)
        return
    from facets.api import docs
    from facets.json import OrjsonProvider

    app.json = OrjsonProvider(app)
    docs.configure(app.config)
    facets_state = extensions.init_app(app, docs.FacetsApi())
    facets_state.api.spec.components.security_scheme(
        "bearerAuth",
        {"type": "http", "scheme": "bearer", "description": "API key (sk_...) or HS256 JWT"},
    )


def _init_http(app: Flask) -> None:
    from facets.api import blp, docs, page
    from facets.edge import http_headers, limits, org_writes, request_id, version_gate
    from facets.ops import health, observability

    app.extensions["facets"].api.register_blueprint(blp)
    docs.init_app(app)
    page.init_app(app)
    request_id.init_app(app)
    observability.init_app(app)
    http_headers.init_app(app)
    version_gate.init_app(app)
    org_writes.init_app(app)
    limits.init_app(app, blp.name)
    health.init_app(app)
