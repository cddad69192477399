"""The counts engine: the facet read path, the Redis counter cache, project labels, the body
memo, the ETag, and the watchers that wake waiting reads when an org's version moves.

Owns the invariant the product rests on: a facets body is exactly the counts of one org version
(see ``facets.counts.cache``). May import ``models``, ``facets.ops`` and the top-level modules;
never ``facets.api``, ``facets.edge`` or ``facets.cli``.
"""
