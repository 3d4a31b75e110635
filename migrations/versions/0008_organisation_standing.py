"""organisation standing: an organisation can be deactivated, and coordinating types are declared

A token is honoured only for an organisation in the registry that is active; ``organisation.active``
(true for every organisation registered so far) lets a regional admin withdraw an organisation without
deleting its history. The role ``coordinator`` is honoured only for organisations whose type is listed in
``coordinating_organisation_type``: the registry declares it, so the published vocabulary (immutable
versions) stays as it is. The one coordinating type today is ``regional-samordning``.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organisation", sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()))
    op.create_table(
        "coordinating_organisation_type",
        sa.Column("type", sa.String(64), primary_key=True),  # an organisation-types code
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.execute("insert into coordinating_organisation_type (type) values ('regional-samordning')")


def downgrade() -> None:
    op.drop_table("coordinating_organisation_type")
    op.drop_column("organisation", "active")
