"""the report-of-concern loop: social services' answer to a report of concern

``concern_answer``: one per answered report (a referral of the report-of-concern kind), given once by the
receiving social services: ``answer`` a ``concern-answers`` code (no free text), when, by which
organisation, and the referral event that told the reporter. The search by child and the overdue count in
the flows read it beside the referral.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

UUID = pg.UUID(as_uuid=True)


def upgrade() -> None:
    op.create_table(
        "concern_answer",
        sa.Column("referral_id", UUID, sa.ForeignKey("referral.id"), primary_key=True),
        sa.Column("answer", sa.String(64), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_by", sa.String(64), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("event_id", UUID, sa.ForeignKey("referral_event.id"), nullable=False),
    )
    # The receiving social services' search by child: a recipient's referrals of one kind, by pseudonym.
    op.create_index("referral_child_kind", "referral", ["child_pseudonym", "kind"])


def downgrade() -> None:
    op.drop_index("referral_child_kind", table_name="referral")
    op.drop_table("concern_answer")
