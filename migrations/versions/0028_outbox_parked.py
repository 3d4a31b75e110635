"""a down receiver's queue parked: the claim's work no longer grows with what waits behind an open breaker

While a receiver's circuit breaker is open every entry queued for it stays pending, and the claim used to
walk them all (``outbox_due``, oldest first) before reaching anybody else's, on every poll of every worker.
Now the worker parks them: ``outbox.parked_at`` is set (when the breaker opens, and as the claim meets one
that arrived later), which takes the entry out of ``outbox_due``; closing the breaker unparks them all in
one statement. ``outbox_parked`` (recipient, next_attempt_at) holds the parked entries only, for the
probe (a receiver's oldest pending entry) and the release. A new entry is inserted unparked, so sending a
referral writes no more index entries than before.

The entries of receivers whose breaker is open at upgrade are parked here.

Revision ID: 0028
Revises: 0027
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

PENDING = "state in ('queued', 'retrying')"


def upgrade() -> None:
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        f"""
        update outbox set parked_at = now()
        where {PENDING} and (lease_until is null or lease_until < now())
          and recipient_organisation in (select recipient_organisation from delivery_breaker
                                         where opened_at is not null)
        """
    )
    op.execute("drop index outbox_due")
    op.execute(f"create index outbox_due on outbox (next_attempt_at) where {PENDING} and parked_at is null")
    op.execute(
        "create index outbox_parked on outbox (recipient_organisation, next_attempt_at) "
        f"where {PENDING} and parked_at is not null"
    )


def downgrade() -> None:
    op.execute("drop index outbox_parked")
    op.execute("drop index outbox_due")
    op.execute(f"create index outbox_due on outbox (next_attempt_at) where {PENDING}")
    op.drop_column("outbox", "parked_at")
