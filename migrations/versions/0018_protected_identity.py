"""protected identity: the sticky mark per child pseudonym

``protected_identity``: one row per child with protected personal data (a sekretessmarkering or skyddad
folkbokföring), by the child's pseudonym (never the personal identity number), from the first message that
marked it (``marked_at``) until an organisation the policy names clears it (the row is deleted; the clear is
audited). It holds no organisation: who marked it is in the sender's audit trail, not here, so the mark
tells nobody who knows about the child.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "protected_identity",
        sa.Column("child_pseudonym", sa.String(100), primary_key=True),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("protected_identity")
