"""Entity tags of facets responses: a digest of what the caller's view shows.

A view is who sees what under which filters (``view_key``: the org, the visible projects, the
normalized filters); its tag (``content_tag``) hashes the view with the exact bytes of its
``200`` body. So a tag changes exactly when the view's body does: a change in the org that the
caller cannot see (a sandbox of a project they are not a member of) leaves their tag, and
their waiting read, alone. Two callers share a tag only if they see the same projects and get
the same bytes. The org's version is not part of the tag; ``X-Facets-Version`` names it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from models import Access

if TYPE_CHECKING:  # the read path imports this module
    from facets.counts.read import FacetFilter

CACHE_CONTROL = "private, no-cache"
VERSION_HEADER = "X-Facets-Version"


def view_key(access: Access, flt: FacetFilter) -> str:
    """What identifies the caller's view of the org (not its version): the body memo's key."""
    visible = "*" if access.project_ids is None else ",".join(sorted(map(str, access.project_ids)))
    raw = "|".join(
        (
            str(access.org_id),
            visible,
            ",".join(sorted(flt.states)),
            str(flt.project_id or ""),
        )
    )
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def content_tag(view: str, body: bytes) -> str:
    """The (unquoted) entity tag of ``body`` as the answer of ``view``."""
    digest = hashlib.blake2b(view.encode(), digest_size=16)
    digest.update(body)
    return digest.hexdigest()
