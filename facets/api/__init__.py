"""The HTTP contract: the API blueprint ``blp`` (one module per resource), its schemas, cursors
and OpenAPI docs, and the Hosted Sandboxes page that uses it (``page``, ``static/``).

Owns what a caller sees of the API: routes, query and body schemas, the documented statuses.
May import ``facets.counts``, ``facets.edge``, ``facets.ops`` and the top-level modules; never
``facets.cli``.
"""

from facets.api import facets, projects, sandboxes  # noqa: F401  (they register routes on blp)
from facets.api.blueprint import blp

__all__ = ["blp"]
