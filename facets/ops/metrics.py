"""Prometheus metrics of the service (process-wide, as prometheus-client keeps them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FACETS_SERVED = Counter(
    "facets_served_total", "Facets responses by how they were answered", ["path"]
)
CACHE_RECOUNTS = Counter("facets_cache_recounts_total", "SQL recounts of an org's facet cells")
CACHE_INSTALLS = Counter(
    "facets_cache_installs_total", "Recounts offered to Redis, by outcome", ["result"]
)
CACHE_UPDATES = Counter(
    "facets_cache_updates_total", "After-commit cache updates, by outcome", ["result"]
)
LEASE_WAITS = Counter("facets_cache_lease_waits_total", "Cold reads that waited on another's lease")
REDIS_ERRORS = Counter("facets_redis_errors_total", "Redis errors absorbed, by operation", ["op"])
HOOK_FAILURES = Counter("facets_after_commit_hook_failures_total", "After-commit hooks that raised")
REQUEST_LATENCY = Histogram(
    "facets_http_request_duration_seconds",
    "Time to answer a request, by endpoint and status",
    ["endpoint", "status"],
)
RATE_LIMITED = Counter(
    "facets_rate_limited_total", "Requests refused with 429, by the limit they hit", ["limit"]
)
WAITING_READS = Gauge(
    "facets_waiting_reads",
    "Facets reads waiting for their view to change",
    multiprocess_mode="livesum",
)
WATCH_WAKEUPS = Counter(
    "facets_watch_wakeups_total", "Waiting reads woken to read their view again"
)
