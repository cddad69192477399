"""Entry point: ``flask run`` (and gunicorn's ``app:create_app()``) build the app here."""

from facets import create_app

__all__ = ["create_app"]
