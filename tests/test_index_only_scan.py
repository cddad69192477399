"""PostgreSQL: the recount's GROUP BY is an Index Only Scan on ``ix_sandboxes_org_state_project``.

Real leg only. The test creates its own database on the ``TEST_DATABASE_URL`` server (so it
never collides with the shared test database), migrates it, bulk-loads a few thousand
sandboxes, runs VACUUM ANALYZE (which also sets the visibility map, hence "Heap Fetches: 0"),
and EXPLAINs the very statement ``models.recount.recount_org`` runs. The rows are written with
plain SQL rather than through the unit of work: the database is thrown away and no app or
counter cache ever reads it, only the planner.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from facets.config import normalize_database_url
from models import Sandbox, migrate

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
INDEX = "ix_sandboxes_org_state_project"
ORGS = 5
SANDBOXES_PER_ORG = 4000
PROJECTS_PER_ORG = 8

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="real leg only: set TEST_DATABASE_URL to a PostgreSQL server"
)


@pytest.fixture
def scratch_database_url():
    """A new, migrated database on the TEST_DATABASE_URL server; dropped afterwards."""
    server_url = make_url(normalize_database_url(TEST_DATABASE_URL))
    name = f"facets_ios_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server_url.set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


LOAD_SQL = """
INSERT INTO orgs (id, slug, name, facet_version, created_at)
SELECT gen_random_uuid(), 'org-' || o, 'Org ' || o, 0, now() FROM generate_series(1, :orgs) o;

INSERT INTO projects (id, org_id, key, name, created_at)
SELECT gen_random_uuid(), orgs.id, 'p' || p, 'Project ' || p, now()
FROM orgs, generate_series(1, :projects) p;

INSERT INTO sandboxes (id, org_id, project_id, state, created_at, updated_at)
SELECT gen_random_uuid(), orgs.id,
       (SELECT id FROM projects
         WHERE projects.org_id = orgs.id AND projects.key = 'p' || (1 + s % :projects)),
       (ARRAY['running', 'paused', 'killed'])[1 + s % 3], now(), now()
FROM orgs, generate_series(1, :per_org) s;

-- every tenth sandbox has no project: the recount groups those under NULL
UPDATE sandboxes SET project_id = NULL WHERE abs(hashtext(id::text)) % 10 = 0;
"""


def recount_statement(org_id: uuid.UUID):
    """The GROUP BY of ``models.recount.recount_org``."""
    return (
        select(Sandbox.state, Sandbox.project_id, func.count())
        .where(Sandbox.org_id == org_id)
        .group_by(Sandbox.state, Sandbox.project_id)
    )


def test_recount_is_an_index_only_scan(scratch_database_url):
    engine = create_engine(scratch_database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in LOAD_SQL.split(";\n"):
                if statement.strip():
                    conn.execute(
                        text(statement),
                        {"orgs": ORGS, "projects": PROJECTS_PER_ORG, "per_org": SANDBOXES_PER_ORG},
                    )
            conn.execute(text("VACUUM ANALYZE"))
            org_id = conn.execute(text("SELECT id FROM orgs WHERE slug = 'org-1'")).scalar_one()

            compiled = recount_statement(org_id).compile(dialect=conn.dialect)
            plan = "\n".join(
                conn.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {compiled}",
                    compiled.params,
                ).scalars()
            )
            counts = conn.execute(recount_statement(org_id)).all()
    finally:
        engine.dispose()

    print(plan)  # shown with -s; the README quotes it
    assert f"Index Only Scan using {INDEX} on sandboxes" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "Heap Fetches: 0" in plan, plan
    assert sum(n for _, _, n in counts) == SANDBOXES_PER_ORG
