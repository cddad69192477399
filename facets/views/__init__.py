"""The API blueprint ``blp``: every org-scoped endpoint, one module per resource."""

from facets.views.blueprint import blp
from facets.views import facets as _facets  # noqa: F401  (registers routes on blp)
from facets.views import projects as _projects, sandboxes as _sandboxes  # noqa: F401

__all__ = ["blp"]
