"""orgs.labels_version: a version of an org's project labels alone.

Bumped with the facet version by project create, rename and delete only, so project labels
cached per labels version survive sandbox writes (``facets.counts.labels``).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.add_column(
            sa.Column("labels_version", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("labels_version")
