"""consent_request: requests for consent to a child's guardians, their answers, and the consent they make

One row per request. ``document`` holds what the engine and the lists need, with each free text about
people (grantor references, evidence references, answer methods, information given) replaced by a marker
(``[encrypted]``; grantor references by ``#<n>``); ``texts`` holds those texts, AES-256-GCM under the
payload keys, bound to ``consent-request:<id>`` (like consents since 0009). ``refused_at`` (the first
refusal) and ``purposes`` let a sharing decision find the sender's refusals about a child in its one facts
statement; ``consent_id`` links the consent the answers made.

Revision ID: 0015
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent_request",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("child_pseudonym", sa.String(100), nullable=False),
        sa.Column("requesting_organisation", sa.String(64), nullable=False),
        sa.Column("purposes", pg.ARRAY(sa.String(64)), nullable=False),
        sa.Column("answer_by", TS, nullable=False),
        sa.Column("refused_at", TS, nullable=True),
        sa.Column("consent_id", pg.UUID(as_uuid=True), sa.ForeignKey("consent.id"), nullable=True),
        sa.Column("document", pg.JSONB, nullable=False),
        sa.Column("texts", sa.LargeBinary, nullable=False),
        sa.Column("texts_key_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    # A decision reads the sender's refusals about a child: by child, then organisation.
    op.create_index(
        "consent_request_refusals",
        "consent_request",
        ["child_pseudonym", "requesting_organisation"],
        postgresql_where=sa.text("refused_at is not null"),
    )


def downgrade() -> None:
    op.drop_index("consent_request_refusals", table_name="consent_request")
    op.drop_table("consent_request")
