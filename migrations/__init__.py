"""Alembic migrations of the facets schema; applied by ``flask db upgrade``."""
