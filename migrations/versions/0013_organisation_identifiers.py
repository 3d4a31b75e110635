"""organisation identifiers: the HSA-id is unique and checked, the organisation number is carried

An organisation in the registry may carry the HSA-id of its unit (Inera's catalogue) and the
organisation number of the legal entity it belongs to. The hub validates both before writing (Inera's
format, the Luhn check digit); the database keeps what the hub relies on: one organisation per HSA-id
(lookups by HSA-id in REST, GraphQL and FHIR find one) and an organisation number of ten digits.

Existing rows keep their ``hsa_id`` as it was; an HSA-id two organisations share would stop this upgrade,
so such duplicates are left for a person to resolve (the upgrade fails naming the index).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organisation", sa.Column("organisation_number", sa.String(10), nullable=True))
    op.create_check_constraint("organisation_number_digits", "organisation", "organisation_number ~ '^[0-9]{10}$'")
    op.create_index(
        "organisation_hsa_id", "organisation", ["hsa_id"], unique=True, postgresql_where=sa.text("hsa_id is not null")
    )


def downgrade() -> None:
    op.drop_index("organisation_hsa_id", table_name="organisation")
    op.drop_constraint("organisation_number_digits", "organisation", type_="check")
    op.drop_column("organisation", "organisation_number")
