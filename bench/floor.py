"""The floor: a trivial flask-smorest GET on the same app, registered by the bench only.

It passes through every app-level hook the facets pass through (request id, JSON request log,
metrics, security headers, version gate) but does no authentication, no SQL and no Redis, so
``facets / floor`` is what the facets cost on top of the framework.
"""

from __future__ import annotations

from flask import Flask

from flask_smorest import Blueprint

from facets.extensions import state

FLOOR_PATH = "/bench/floor"

floor_blp = Blueprint("bench_floor", __name__, url_prefix="/bench", description="Bench only.")


@floor_blp.route("/floor", methods=["GET"])
@floor_blp.response(200)
def floor():
    """A fixed small body."""
    return {"status": "ok"}


def register_floor(app: Flask) -> Flask:
    """Add the floor route to ``app`` (before its first request)."""
    with app.app_context():
        state().api.register_blueprint(floor_blp)
    return app
