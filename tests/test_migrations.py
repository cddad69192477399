"""Alembic: the migrations go up, down and up again, and match the models exactly.

Each leg migrates a scratch database of its own: a new SQLite file (fast), or on the real leg
``TEST_MIGRATIONS_DATABASE_URL`` (default: the test database's name plus ``_mig``, created
when missing), never the shared test database.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import TEST_DATABASE_URL
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from facets.config import normalize_database_url
from models import Base, migrate

TABLES = {t.name for t in Base.metadata.sorted_tables}


def scratch_postgres_url() -> str:
    """An empty scratch PostgreSQL database (created on first use)."""
    assert TEST_DATABASE_URL, "TEST_DATABASE_URL is not set"
    default = make_url(normalize_database_url(TEST_DATABASE_URL))
    default = default.set(database=f"{default.database}_mig")
    url = make_url(
        normalize_database_url(os.environ.get("TEST_MIGRATIONS_DATABASE_URL") or str(default))
    )
    assert url.database != make_url(normalize_database_url(TEST_DATABASE_URL)).database
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
        ).scalar()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    server.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url.render_as_string(hide_password=False)


@pytest.fixture
def scratch_url(leg, tmp_path) -> str:
    if leg == "real":
        return scratch_postgres_url()
    return f"sqlite:///{tmp_path / 'migrations.sqlite3'}"


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def model_diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def head() -> str:
    return ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()


# SQLite cannot reflect the expression index on lower(email); the last test checks it works.
@pytest.mark.filterwarnings(
    "ignore:Skipped unsupported reflection of expression-based index uq_users_email_lower"
)
@pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index 'uq_users_email_lower'"
)
def test_upgrade_downgrade_upgrade_ends_matching_the_models(scratch_url):
    migrate.upgrade(scratch_url)
    assert current_revision(scratch_url) == head()
    assert table_names(scratch_url) == TABLES | {"alembic_version"}

    migrate.downgrade(scratch_url, "base")
    assert current_revision(scratch_url) is None
    assert table_names(scratch_url) <= {"alembic_version"}

    migrate.upgrade(scratch_url)
    assert current_revision(scratch_url) == head()
    assert table_names(scratch_url) == TABLES | {"alembic_version"}
    assert model_diff(scratch_url) == []


def test_every_revision_downgrades_one_step(scratch_url):
    script = ScriptDirectory.from_config(migrate.alembic_config(scratch_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    for revision in revisions:
        migrate.upgrade(scratch_url, revision)
        assert current_revision(scratch_url) == revision
    for revision in reversed(revisions):
        migrate.downgrade(scratch_url, "-1")
        assert current_revision(scratch_url) != revision
    assert current_revision(scratch_url) is None


def test_migrated_database_enforces_the_model_constraints(scratch_url):
    """The constraints autogenerate cannot compare are there: case-insensitive unique email."""
    migrate.upgrade(scratch_url)
    engine = create_engine(scratch_url)
    try:
        insert = text("INSERT INTO users (id, email, created_at) VALUES (:id, :email, :at)")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(insert, {"id": uuid.uuid4().hex, "email": "a@x.io", "at": now})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert, {"id": uuid.uuid4().hex, "email": "A@X.io", "at": now})
    finally:
        engine.dispose()
