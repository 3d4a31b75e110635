"""organisation registry

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisation",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(64), nullable=False, index=True),
        sa.Column("municipality_code", sa.String(4), nullable=True, index=True),
        sa.Column("region_code", sa.String(2), nullable=False),
        sa.Column("parent_id", sa.String(64), sa.ForeignKey("organisation.id"), nullable=True),
        sa.Column("hsa_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("id ~ '^[a-z0-9][a-z0-9-]{1,63}$'", name="organisation_id_slug"),
    )


def downgrade() -> None:
    op.drop_table("organisation")
