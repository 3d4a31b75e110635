"""referrals: the referral, its lifecycle events, the delivery outbox and the mailbox

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ORG = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "referral",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("sender_organisation", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("recipient_organisation", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("service_id", sa.String(64), sa.ForeignKey("service.id"), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("cancellation_requested_at", TS, nullable=True),
        sa.Column("delivered_at", TS, nullable=True),  # the receiver sees a referral once it is delivered
        sa.Column("child_pseudonym", sa.String(100), nullable=False),
        # Metadata the hub and coordinators may see (no identity, no free text).
        sa.Column("dimensions", pg.ARRAY(sa.String(64)), nullable=False, server_default="{}"),
        sa.Column("trappan_step", sa.SmallInteger, nullable=True),
        sa.Column("data_categories", pg.ARRAY(sa.String(64)), nullable=False),
        sa.Column("permitted_categories", pg.ARRAY(sa.String(64)), nullable=False),
        sa.Column("legal_basis", sa.String(32), nullable=False),
        sa.Column("basis_reference", sa.String(64), nullable=True),
        sa.Column("decision_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        # The referral document with personal data, AES-GCM encrypted; purged after the retention period.
        sa.Column("payload", sa.LargeBinary, nullable=True),
        sa.Column("payload_key_id", sa.String(32), nullable=True),
        sa.Column("payload_purged_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("sender_organisation", "idempotency_key", name="referral_idempotency"),
    )
    op.create_index("referral_sender", "referral", ["sender_organisation", "created_at", "id"])
    op.create_index("referral_recipient", "referral", ["recipient_organisation", "created_at", "id"])
    op.create_table(
        "referral_event",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("referral_id", pg.UUID(as_uuid=True), sa.ForeignKey("referral.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),  # status | cancellation-requested
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=True),
        sa.Column("by_organisation", ORG, nullable=True),  # null: the hub itself (delivery, failure)
        sa.Column("by_subject", sa.String(200), nullable=True),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.Column("suggested_organisation", ORG, nullable=True),
        sa.Column("suggested_service", sa.String(64), nullable=True),
        # Free text (reason, feedback) may carry personal data: encrypted like the referral's payload.
        sa.Column("details", sa.LargeBinary, nullable=True),
        sa.Column("details_key_id", sa.String(32), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("occurred_at", TS, nullable=False),
        sa.UniqueConstraint("referral_id", "seq", name="referral_event_seq"),
        sa.UniqueConstraint("referral_id", "by_organisation", "idempotency_key", name="referral_event_idempotency"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("referral_id", pg.UUID(as_uuid=True), sa.ForeignKey("referral.id"), nullable=False, index=True),
        sa.Column("event_id", pg.UUID(as_uuid=True), sa.ForeignKey("referral_event.id"), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),  # referral | status-event
        sa.Column("recipient_organisation", ORG, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        # queued | retrying | delivered | dead-lettered | abandoned (not sent: no legal basis at send time)
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("adapter", sa.String(64), nullable=True),
        sa.Column("remote_id", sa.String(200), nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    # The worker's claim query: due entries, oldest first.
    op.create_index(
        "outbox_due",
        "outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("state in ('queued', 'retrying')"),
    )
    op.create_table(
        "mailbox_message",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("organisation_id", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("outbox_id", pg.UUID(as_uuid=True), sa.ForeignKey("outbox.id"), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("body_key_id", sa.String(32), nullable=False),
        sa.Column("visible_at", TS, nullable=False),
        sa.Column("fetch_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index(
        "mailbox_pending",
        "mailbox_message",
        ["organisation_id", "visible_at"],
        postgresql_where=sa.text("acknowledged_at is null"),
    )


def downgrade() -> None:
    for table in ("mailbox_message", "outbox", "referral_event", "referral"):
        op.drop_table(table)
