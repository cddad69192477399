"""Operations: the request log, Prometheus metrics and the health probes.

What an operator reads about the service. May import ``models`` and the top-level modules;
``facets.ops.metrics`` imports nothing of the service, so every room may count into it.
"""
