"""What guards the edge: authentication, rate limits, the client-version gate, request ids,
security headers and the envelope of requests gunicorn refuses itself.

Runs before (or around) a view and decides whether it runs at all. May import
``facets.counts``, ``facets.ops``, ``models`` and the top-level modules; never ``facets.api``
or ``facets.cli``.
"""
