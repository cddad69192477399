"""Session revocation: ``users.sessions_revoked_at`` (JWTs issued before it stop working).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 04:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not a batch: SQLite adds and drops a column in place (3.35+), while a
# batch would copy the table and lose the expression index on lower(email).


def upgrade() -> None:
    op.add_column("users", sa.Column("sessions_revoked_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("users", "sessions_revoked_at")
