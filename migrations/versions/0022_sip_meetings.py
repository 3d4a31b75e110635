"""SIP meetings (samordnad individuell plan): one invitation request to several organisations, each
invitee decided on its own; answers back to the inviter; news delivered through the outbox

``sip_meeting``: the meeting, by the inviter and the child's pseudonym (never the personal identity
number); ``details``/``details_key_id``: the child's identity, the purpose and the place, sealed (the
payload cipher, bound to the meeting's id); ``idempotency_key``/``request_hash``: the inviter's key.
``sip_invitation``: one per invitee, ``outcome`` invited | withheld, with the sharing decision that
decided it, and the invitee's latest answer. ``sip_event``: what travels (invited and cancelled to an
invitee, answered to the inviter), each an outbox entry's message.

On ``outbox``: ``sip_event_id`` (entries of kinds ``sip-invitation`` and ``sip-answer``, which have no
referral).

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ORG = sa.String(64)
UUID = pg.UUID(as_uuid=True)


def upgrade() -> None:
    op.create_table(
        "sip_meeting",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("inviter_organisation", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("child_pseudonym", sa.String(100), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False),  # open | cancelled
        sa.Column("times", pg.ARRAY(TS), nullable=False),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),  # in-person | video | phone
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("details", sa.LargeBinary, nullable=False),
        sa.Column("details_key_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.Column("cancel_reason", sa.String(500), nullable=True),
        sa.UniqueConstraint("inviter_organisation", "idempotency_key"),
    )
    op.create_table(
        "sip_invitation",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("meeting_id", UUID, sa.ForeignKey("sip_meeting.id"), nullable=False, index=True),
        sa.Column("organisation_id", ORG, sa.ForeignKey("organisation.id"), nullable=False, index=True),
        sa.Column("outcome", sa.String(16), nullable=False),  # invited | withheld
        sa.Column("decision_id", UUID, sa.ForeignKey("sharing_decision.id"), nullable=False),
        sa.Column("answer", sa.String(16), nullable=True),  # accepted | declined | proposed-time
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("proposed_time", TS, nullable=True),
        sa.UniqueConstraint("meeting_id", "organisation_id"),
    )
    op.create_table(
        "sip_event",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("invitation_id", UUID, sa.ForeignKey("sip_invitation.id"), nullable=False, index=True),
        sa.Column("type", sa.String(16), nullable=False),  # invited | answered | cancelled
        sa.Column("to_organisation", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("answer", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("proposed_time", TS, nullable=True),
        sa.Column("at", TS, nullable=False),
    )
    op.add_column("outbox", sa.Column("sip_event_id", UUID, sa.ForeignKey("sip_event.id"), nullable=True))


def downgrade() -> None:
    kinds = "('sip-invitation', 'sip-answer')"
    op.execute(f"delete from mailbox_message where outbox_id in (select id from outbox where kind in {kinds})")
    op.execute(f"delete from outbox where kind in {kinds}")
    op.drop_column("outbox", "sip_event_id")
    for table in ("sip_event", "sip_invitation", "sip_meeting"):
        op.drop_table(table)
