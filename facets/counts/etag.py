"""Entity tags of facets responses, decided before any Redis read or recount.

A tag hashes the org's facet version, what the caller can see and the normalized filters.
Every change to an org's sandboxes, projects or project memberships bumps the version, so a
tag stays valid exactly as long as the response it was computed for; two callers share a tag
only if they see the same projects.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from models import Access

if TYPE_CHECKING:  # the read path imports this module
    from facets.counts.read import FacetFilter

CACHE_CONTROL = "private, no-cache"
VERSION_HEADER = "X-Facets-Version"


def facets_etag(access: Access, flt: FacetFilter) -> str:
    """The (unquoted) entity tag of the facets of ``access`` under ``flt``."""
    visible = "*" if access.project_ids is None else ",".join(sorted(map(str, access.project_ids)))
    raw = "|".join(
        (
            str(access.org_id),
            str(access.version),
            visible,
            ",".join(sorted(flt.states)),
            str(flt.project_id or ""),
        )
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
