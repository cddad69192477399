"""The API blueprint ``blp``: every org-scoped endpoint, one module per resource."""

from facets.views.blueprint import blp
from facets.views import facets as _facets  # noqa: F401  (registers routes on blp)

__all__ = ["blp"]
