"""the child's plan: versions on the child's team, each member's share decided on its own, reviews

``plan_version``: one version of a child's plan (numbered per team), its author, the sections it holds and
its content sealed like a referral's payload (``content``/``content_key_id``, AES-256-GCM bound to the
version id); after the retention period the content is dropped and ``purged_at`` set: metadata remains.
``plan_share``: what one member received of a version (``plan-version``: the sections its legal basis
covers; ``plan-notice``: none) with the sections withheld and why, and the recorded sharing decision.
``plan_review``: a member's answers to the five evaluation questions on a version (sealed, purged alike).

On ``outbox``: ``plan_share_id`` (kinds ``plan-version`` and ``plan-notice``) and ``plan_review_id``
(kind ``plan-review``).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ORG = sa.String(64)
UUID = pg.UUID(as_uuid=True)
KINDS = ("plan-version", "plan-notice", "plan-review")


def _version_id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("plan_version_id", UUID, sa.ForeignKey("plan_version.id"), nullable=False, index=True)


def upgrade() -> None:
    op.create_table(
        "plan_version",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("team_id", UUID, sa.ForeignKey("team.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("author_organisation", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("schema_version", sa.String(16), nullable=False),
        sa.Column("sections", pg.JSONB, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=True),
        sa.Column("content_key_id", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("purged_at", TS, nullable=True),
        sa.UniqueConstraint("team_id", "number", name="uq_plan_version_team_number"),
    )
    op.create_table(
        "plan_share",
        sa.Column("id", UUID, primary_key=True),
        _version_id(),
        sa.Column("organisation_id", ORG, sa.ForeignKey("organisation.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),  # plan-version | plan-notice
        sa.Column("sections", pg.JSONB, nullable=False),
        sa.Column("withheld", pg.JSONB, nullable=False),
        sa.Column("decision_id", UUID, sa.ForeignKey("sharing_decision.id"), nullable=False),
        sa.Column("legal_basis", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("plan_version_id", "organisation_id", name="uq_plan_share_version_organisation"),
    )
    op.create_table(
        "plan_review",
        sa.Column("id", UUID, primary_key=True),
        _version_id(),
        sa.Column("organisation_id", ORG, sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("answers", sa.LargeBinary, nullable=True),
        sa.Column("answers_key_id", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("purged_at", TS, nullable=True),
    )
    op.add_column("outbox", sa.Column("plan_share_id", UUID, sa.ForeignKey("plan_share.id"), nullable=True))
    op.add_column("outbox", sa.Column("plan_review_id", UUID, sa.ForeignKey("plan_review.id"), nullable=True))


def downgrade() -> None:
    kinds = ", ".join(f"'{k}'" for k in KINDS)
    op.execute(f"delete from mailbox_message where outbox_id in (select id from outbox where kind in ({kinds}))")
    op.execute(f"delete from outbox where kind in ({kinds})")
    op.drop_column("outbox", "plan_review_id")
    op.drop_column("outbox", "plan_share_id")
    for table in ("plan_review", "plan_share", "plan_version"):
        op.drop_table(table)
