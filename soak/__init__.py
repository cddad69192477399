"""The fault soak: gunicorn + PostgreSQL + a private Redis under traffic, Redis restarts and a
killed worker; afterwards every acknowledged write is in SQL and every facets answer that can
be checked equals the SQL count at the version it names. ``python -m soak.run [--long]``."""
