"""Offline API docs: the OpenAPI document at ``/openapi.json`` and Swagger UI at ``/docs``.

The Swagger UI assets are served from the installed ``swagger_ui_bundle`` package, and the
online validator is disabled, so the page works with no internet access.
"""

from __future__ import annotations

from swagger_ui_bundle import swagger_ui_path

from flask import Blueprint, Flask, send_from_directory

from flask_smorest import Api

from facets.api.schemas import APIErrorPayloadSchema
from facets.errors import register_error_handlers

SWAGGER_ASSETS_URL = "/docs/static/"


class FacetsApi(Api):
    """flask-smorest's Api with the spec's error envelope instead of its own."""

    ERROR_SCHEMA = APIErrorPayloadSchema

    def _register_error_handlers(self) -> None:
        register_error_handlers(self._app)


assets = Blueprint("swagger_ui_assets", __name__)


@assets.route(f"{SWAGGER_ASSETS_URL}<path:filename>")
def swagger_asset(filename: str):
    """A Swagger UI asset (JS, CSS, icons) from the installed bundle."""
    return send_from_directory(str(swagger_ui_path), filename, max_age=86400)


def configure(config: dict) -> None:
    """flask-smorest settings for the document and the UI."""
    config.setdefault("API_TITLE", "Sandbox facets")
    config.setdefault("API_VERSION", "1.0.0")
    config.setdefault("OPENAPI_VERSION", "3.0.3")  # the bundled Swagger UI 4 renders 3.0.x only
    config.setdefault("OPENAPI_URL_PREFIX", "/")
    config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    config.setdefault("OPENAPI_SWAGGER_UI_URL", SWAGGER_ASSETS_URL)
    config.setdefault("OPENAPI_SWAGGER_UI_CONFIG", {"validatorUrl": None})


def init_app(app: Flask) -> None:
    """Serve the Swagger UI assets."""
    app.register_blueprint(assets)
