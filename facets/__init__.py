"""The sandbox facets service: the HTTP side (config, views, schemas, errors, CLI)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from facets import (
    cache_cli,
    cli,
    docs,
    extensions,
    health,
    http_headers,
    limits,
    observability,
    request_id,
    version_gate,
)
from facets import (
    config as config_module,
)
from facets.json import OrjsonProvider


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

    facets_state = extensions.init_app(app)
    facets_state.api.spec.components.security_scheme(
        "bearerAuth",
        {"type": "http", "scheme": "bearer", "description": "API key (sk_...) or HS256 JWT"},
    )
    from facets.views import blp

    facets_state.api.register_blueprint(blp)
    docs.init_app(app)
    request_id.init_app(app)
    observability.init_app(app)
    http_headers.init_app(app)
    version_gate.init_app(app)
    limits.init_app(app)
    health.init_app(app)
    cli.init_app(app)
    cache_cli.init_app(app)
    return app
