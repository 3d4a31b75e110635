"""fewer index entries per referral: the indexes no query reads, or reads only for rows a referral never writes

Every sent referral inserts a sharing decision, a referral, its first event and two audit entries, and each
index on those tables is one more entry to insert and to log. Three of them hold nothing any query needs:

- ``audit_event_partition_seq``, unique (partition, seq): the per-organisation chains' positions, given only
  to entries appended before migration 0016 (``seq`` is null since); only ``hub.db.audit.verify_chains``
  reads it, for ``seq is not null``. Now a unique index on those entries alone: the same uniqueness (nulls
  never conflicted), and no entry for each new audit entry (two per referral).
- ``referral_event_idempotency``, unique (referral_id, by_organisation, idempotency_key): the caller's key of
  a status change; a referral's first event and the hub's own events have none. Now a unique index on the
  events that carry a key (``hub.db.referrals.event_by_key`` asks only for those): the same uniqueness.
- ``ix_sharing_decision_child_pseudonym``: no query looks decisions up by child (they are read by id);
  dropped.

Revision ID: 0024
Revises: 0022
"""

from alembic import op

revision = "0024"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table audit_event drop constraint audit_event_partition_seq")
    op.execute("create unique index audit_event_partition_seq on audit_event (partition, seq) where seq is not null")
    op.execute("alter table referral_event drop constraint referral_event_idempotency")
    op.execute(
        "create unique index referral_event_idempotency on referral_event (referral_id, by_organisation, "
        "idempotency_key) where idempotency_key is not null"
    )
    op.execute("drop index ix_sharing_decision_child_pseudonym")


def downgrade() -> None:
    op.execute("create index ix_sharing_decision_child_pseudonym on sharing_decision (child_pseudonym)")
    op.execute("drop index referral_event_idempotency")
    op.execute(
        "alter table referral_event add constraint referral_event_idempotency "
        "unique (referral_id, by_organisation, idempotency_key)"
    )
    op.execute("drop index audit_event_partition_seq")
    op.execute("alter table audit_event add constraint audit_event_partition_seq unique (partition, seq)")
