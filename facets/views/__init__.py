"""The API blueprint ``blp``: every org-scoped endpoint, one module per resource."""

from facets.views import facets, projects, sandboxes  # noqa: F401  (they register routes on blp)
from facets.views.blueprint import blp

__all__ = ["blp"]
