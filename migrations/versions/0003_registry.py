"""registry: organisation endpoints (adapter + config) and the service directory

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "endpoint",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("organisation_id", sa.String(64), sa.ForeignKey("organisation.id"), nullable=False, index=True),
        sa.Column("adapter", sa.String(64), nullable=False),
        # Validated against the adapter's Config; secrets appear only as references (names), never values.
        sa.Column("config", pg.JSONB, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    # Deliveries go to one place per organisation: its single active endpoint.
    op.create_index(
        "endpoint_one_active", "endpoint", ["organisation_id"], unique=True, postgresql_where=sa.text("active")
    )
    op.create_table(
        "service",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organisation_id", sa.String(64), sa.ForeignKey("organisation.id"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("intervention_level", sa.String(32), nullable=True),  # intervention-levels: prevention level
        sa.Column("trappan_step", sa.SmallInteger, nullable=True),
        sa.Column("age_min", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("age_max", sa.SmallInteger, nullable=False, server_default="18"),
        sa.Column("referral_kinds", pg.ARRAY(sa.String(64)), nullable=False, server_default="{}"),
        sa.Column("dimensions", pg.ARRAY(sa.String(64)), nullable=False, server_default="{}"),
        # Municipalities served (SCB codes); empty = the organisation's own municipality, or the county.
        sa.Column("municipality_codes", pg.ARRAY(sa.String(4)), nullable=False, server_default="{}"),
        sa.Column("waiting_days", sa.Integer, nullable=True),
        sa.Column("waiting_confirmed_at", TS, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("age_min <= age_max", name="service_age_range"),
        sa.CheckConstraint("trappan_step between 0 and 3", name="service_trappan_step"),
        sa.CheckConstraint("waiting_days >= 0", name="service_waiting_days"),
    )
    op.create_index("service_referral_kinds", "service", ["referral_kinds"], postgresql_using="gin")
    op.create_index("service_municipality_codes", "service", ["municipality_codes"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_table("service")
    op.drop_table("endpoint")
