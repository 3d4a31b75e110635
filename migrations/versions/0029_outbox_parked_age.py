"""a down receiver's parked queue by age: giving up what waits past the retry horizon reads only that

Every failed probe of a down receiver (about twice a second) dead-letters its entries queued before the
retry horizon (``expire_pending``). Matched by recipient and age, with no index on either for parked
entries, that read the receiver's whole parked backlog each time: 20,000 rows with 20,000 held, growing with
the outage (0028 kept the claim from walking it; this keeps the expiry from it). ``outbox_parked_since``
(recipient, the horizon's start: ``coalesce(requeued_at, created_at)``) over the parked entries only reads
just the expired ones; the few pending entries not parked (arrivals the next claim parks, the probe) are
found through ``outbox_due``. Only the parking writes it: sending a referral writes no more index entries.

Revision ID: 0029
Revises: 0028
"""

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "create index outbox_parked_since on outbox (recipient_organisation, (coalesce(requeued_at, created_at)))"
        " where state in ('queued', 'retrying') and parked_at is not null"
    )


def downgrade() -> None:
    op.execute("drop index outbox_parked_since")
