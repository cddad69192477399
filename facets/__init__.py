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

from facets import cli, extensions
from facets import config as config_module
from facets.api import docs, page
from facets.edge import http_headers, limits, request_id, version_gate
from facets.json import OrjsonProvider
from facets.ops import health, observability


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment, then ``config`` on top."""
    app = Flask(__name__, instance_relative_config=True)
    app.json = OrjsonProvider(app)
    settings = config_module.from_environment(app.instance_path)
    settings.update(config or {})
    config_module.finalize(settings)
    docs.configure(settings)
    app.config.from_mapping(settings)
    os.makedirs(app.instance_path, exist_ok=True)
    logging.getLogger("facets").setLevel(app.config["LOG_LEVEL"])

    facets_state = extensions.init_app(app, docs.FacetsApi())
    facets_state.api.spec.components.security_scheme(
        "bearerAuth",
        {"type": "http", "scheme": "bearer", "description": "API key (sk_...) or HS256 JWT"},
    )
    from facets.api import blp

    facets_state.api.register_blueprint(blp)
    docs.init_app(app)
    page.init_app(app)
    request_id.init_app(app)
    observability.init_app(app)
    http_headers.init_app(app)
    version_gate.init_app(app)
    limits.init_app(app, blp.name)
    health.init_app(app)
    cli.init_app(app)
    return app
