"""the team around the child: named persons and lead professionals with their periods, handover offers,
participants' memberships, the family's choices; offers delivered through the outbox

``team``: one per child, by the child's pseudonym (never the personal identity number).
``team_assignment``: a named person (with its life stage) or a lead professional, for a period.
``team_offer``: the named person's role offered to the next organisation (open, accepted, declined,
withdrawn); ``child``/``child_key_id``: the child's identity sealed for delivery to the receiving system.
``team_membership``: a participant's period with why it joined and left (``referral_id``: the accepted
referral that made it join). ``team_family_choice``: recorded, blocks nothing.

On ``outbox``: ``team_offer_id`` (entries of kind ``team-offer``, which have no referral: ``referral_id``
becomes nullable).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ORG = sa.String(64)
UUID = pg.UUID(as_uuid=True)


def _team_id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("team_id", UUID, sa.ForeignKey("team.id"), nullable=False, index=True)


def upgrade() -> None:
    op.create_table(
        "team",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("child_pseudonym", sa.String(100), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "team_assignment",
        sa.Column("id", UUID, primary_key=True),
        _team_id(),
        sa.Column("role", sa.String(32), nullable=False),  # named-person | lead-professional
        sa.Column("organisation_id", ORG, sa.ForeignKey("organisation.id"), nullable=False, index=True),
        sa.Column("stage", sa.String(64), nullable=True),
        sa.Column("professional_ref", sa.String(200), nullable=True),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("period_end", TS, nullable=True),
        sa.Column("start_reason", sa.String(64), nullable=False),
        sa.Column("end_reason", sa.String(200), nullable=True),
    )
    op.create_table(
        "team_offer",
        sa.Column("id", UUID, primary_key=True),
        _team_id(),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("from_organisation", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("to_organisation", ORG, sa.ForeignKey("organisation.id"), nullable=False, index=True),
        sa.Column("professional_ref", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),  # open | accepted | declined | withdrawn
        sa.Column("offered_at", TS, nullable=False),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("child", sa.LargeBinary, nullable=False),
        sa.Column("child_key_id", sa.String(64), nullable=False),
    )
    op.create_table(
        "team_membership",
        sa.Column("id", UUID, primary_key=True),
        _team_id(),
        sa.Column("organisation_id", ORG, sa.ForeignKey("organisation.id"), nullable=False, index=True),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("period_end", TS, nullable=True),
        sa.Column("join_reason", sa.String(200), nullable=False),
        sa.Column("leave_reason", sa.String(200), nullable=True),
        sa.Column("referral_id", UUID, sa.ForeignKey("referral.id"), nullable=True),
    )
    op.create_table(
        "team_family_choice",
        sa.Column("id", UUID, primary_key=True),
        _team_id(),
        sa.Column("about", sa.String(32), nullable=False),  # lead-professional | plan
        sa.Column("choice", sa.String(16), nullable=False),  # declined | agreed
        sa.Column("chosen_by", sa.String(16), nullable=False),  # guardian | child
        sa.Column("recorded_by", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.alter_column("outbox", "referral_id", nullable=True)
    op.add_column("outbox", sa.Column("team_offer_id", UUID, sa.ForeignKey("team_offer.id"), nullable=True))


def downgrade() -> None:
    op.execute("delete from mailbox_message where outbox_id in (select id from outbox where kind = 'team-offer')")
    op.execute("delete from outbox where kind = 'team-offer'")
    op.drop_column("outbox", "team_offer_id")
    op.alter_column("outbox", "referral_id", nullable=False)
    for table in ("team_family_choice", "team_membership", "team_offer", "team_assignment", "team"):
        op.drop_table(table)
