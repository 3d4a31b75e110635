"""lawful sharing: consents, necessity assessments, sharing decisions, the audit trail

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("child_pseudonym", sa.String(100), nullable=False, index=True),
        sa.Column("recording_organisation", sa.String(64), nullable=False),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("valid_until", TS, nullable=False),
        sa.Column("withdrawn_at", TS, nullable=True),
        # Every organisation id and type the consent names, for "consents my organisation is party to".
        sa.Column("party_organisations", pg.ARRAY(sa.String(64)), nullable=False),
        sa.Column("party_types", pg.ARRAY(sa.String(64)), nullable=False),
        sa.Column("document", pg.JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.CheckConstraint("valid_until > valid_from", name="consent_period"),
    )
    op.create_index("consent_party_organisations", "consent", ["party_organisations"], postgresql_using="gin")
    op.create_table(
        "necessity_assessment",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("child_pseudonym", sa.String(100), nullable=False, index=True),
        sa.Column("organisation_id", sa.String(64), nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("document", pg.JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "sharing_decision",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("from_organisation", sa.String(64), nullable=False),
        sa.Column("to_organisation", sa.String(64), nullable=False),
        sa.Column("child_pseudonym", sa.String(100), nullable=False, index=True),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("legal_basis", sa.String(64), nullable=True),
        sa.Column("basis_reference", sa.String(100), nullable=True),
        sa.Column("permitted_categories", pg.ARRAY(sa.String(64)), nullable=False),
        sa.Column("denied_categories", pg.ARRAY(sa.String(64)), nullable=False),
        sa.Column("explanation", pg.JSONB, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
    )
    op.create_table(
        "audit_chain_head",
        sa.Column("partition", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("partition", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.Column("canonical", sa.Text, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(4), nullable=False),
        sa.Column("actor_organisation", sa.String(64), nullable=False),
        sa.Column("counterpart_organisation", sa.String(64), nullable=True),
        sa.Column("child_pseudonym", sa.String(100), nullable=True),
        sa.Column("legal_basis", sa.String(64), nullable=True),
        sa.Column("decision_id", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.UniqueConstraint("partition", "seq", name="audit_event_partition_seq"),
    )
    op.create_index("audit_event_occurred", "audit_event", ["occurred_at", "id"])
    op.create_index("audit_event_actor", "audit_event", ["actor_organisation", "id"])
    op.create_index("audit_event_counterpart", "audit_event", ["counterpart_organisation", "id"])
    op.create_index("audit_event_child", "audit_event", ["child_pseudonym", "id"])
    # Append-only: the application's role can neither change nor remove an entry. (A superuser can
    # disable the trigger; the hash chain is what catches that.)
    op.execute(
        """
        create function audit_event_append_only() returns trigger language plpgsql as $$
        begin
          raise exception 'audit_event is append-only';
        end $$
        """
    )
    op.execute(
        """
        create trigger audit_event_no_update before update or delete on audit_event
          for each row execute function audit_event_append_only()
        """
    )


def downgrade() -> None:
    op.execute("drop trigger if exists audit_event_no_update on audit_event")
    op.execute("drop function if exists audit_event_append_only()")
    for table in ("audit_event", "audit_chain_head", "sharing_decision", "necessity_assessment", "consent"):
        op.drop_table(table)
