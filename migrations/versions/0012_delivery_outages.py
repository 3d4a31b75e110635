"""delivery over outages: a circuit breaker per receiving organisation, and what an outbox entry was last
checked against

``delivery_breaker``: one row per receiving organisation whose deliveries are failing. Every worker reads
and writes it, so the breaker holds across any number of workers: ``consecutive_failures`` counts transient
failures since the last answer from the receiver; at the threshold ``opened_at`` is set (the endpoint is
down) and workers claim no ordinary delivery for it, only one probe at a time (``probe_lease_until``: a
probe is out) when ``next_probe_at`` has come. An answer from the receiver deletes the row (closed).

On ``outbox``: ``checked_outcome`` and ``checked_decision_id``, the send-time legal re-check's outcome
last recorded for the entry and its decision, so a retry with the same outcome records no new decision;
``requeued_at``, when an operator queued a dead-lettered entry again (the retry horizon starts over).

Revision ID: 0012
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "delivery_breaker",
        sa.Column("recipient_organisation", sa.String(64), primary_key=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("opened_at", TS, nullable=True),
        sa.Column("next_probe_at", TS, nullable=True),
        sa.Column("probe_lease_until", TS, nullable=True),
        sa.Column("probes_failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.add_column("outbox", sa.Column("checked_outcome", sa.String(300), nullable=True))
    op.add_column("outbox", sa.Column("checked_decision_id", pg.UUID(as_uuid=True), nullable=True))
    op.add_column("outbox", sa.Column("requeued_at", TS, nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "requeued_at")
    op.drop_column("outbox", "checked_decision_id")
    op.drop_column("outbox", "checked_outcome")
    op.drop_table("delivery_breaker")
