"""sealed free texts: consents' and necessity assessments' free texts about people encrypted at rest

A consent's grantor references, evidence reference, information given, who withdrew it and why, and a
necessity assessment's decision maker, justification and case reference move from the plain ``document``
into ``texts``: AES-256-GCM under the referral payloads' keys (HUB_PAYLOAD_KEYS), bound to the row
(``consent:<id>``, ``necessity-assessment:<id>``). In ``document`` each becomes a marker that keeps only
whether it was given (``[encrypted]``) and, for grantor references, which grantors are the same person
(``#<n>``): all the decision engine reads. Existing rows are converted here, so this migration needs the
payload keys the hub runs with (read from the environment as the hub reads them) when there are rows.

Also an index for "which consents did this organisation share under" (reading a consent that names an
organisation's type is allowed only to organisations that took part in a share under it).

The sealing below is a frozen copy of ``hub.db.lawful.seal_*`` as of this revision.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SEALED = "[encrypted]"
BATCH = 500


def _cipher() -> Any:
    from hub.config import Settings
    from hub.keys import payload_cipher

    settings = op.get_context().config.attributes.get("settings") or Settings()
    return payload_cipher(settings)


def _mark(value: str | None) -> str | None:
    return value if value is None or not value.strip() else SEALED


def _seal_consent(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    texts = {
        "grantors": [g["reference"] for g in doc["grantors"]],
        "evidence_reference": doc["evidence_reference"],
        "information_given": doc["information_given"],
        "withdrawn_by": doc.get("withdrawn_by"),
        "withdrawal_reason": doc.get("withdrawal_reason"),
    }
    first: dict[str, int] = {}
    grantors = [{**g, "reference": f"#{first.setdefault(g['reference'], i)}"} for i, g in enumerate(doc["grantors"])]
    sealed = {
        **doc,
        "grantors": grantors,
        "evidence_reference": _mark(doc["evidence_reference"]),
        "information_given": {k: _mark(v) for k, v in doc["information_given"].items()},
        "withdrawn_by": _mark(doc.get("withdrawn_by")),
        "withdrawal_reason": _mark(doc.get("withdrawal_reason")),
    }
    return sealed, texts


def _open_consent(doc: dict[str, Any], texts: dict[str, Any]) -> dict[str, Any]:
    grantors = [{**g, "reference": ref} for g, ref in zip(doc["grantors"], texts["grantors"], strict=True)]
    return {**doc, **{k: v for k, v in texts.items() if k != "grantors"}, "grantors": grantors}


def _seal_assessment(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    texts = {k: doc[k] for k in ("decided_by", "justification", "case_reference")}
    sealed = {
        **doc,
        "decided_by": {k: _mark(v) for k, v in doc["decided_by"].items()},
        "justification": _mark(doc["justification"]),
        "case_reference": _mark(doc["case_reference"]),
    }
    return sealed, texts


_TABLES = (("consent", "consent", _seal_consent), ("necessity_assessment", "necessity-assessment", _seal_assessment))


def upgrade() -> None:
    for table, _, _ in _TABLES:
        op.add_column(table, sa.Column("texts", sa.LargeBinary, nullable=True))
        op.add_column(table, sa.Column("texts_key_id", sa.String(32), nullable=True))
    op.create_index(
        "referral_consent_basis",
        "referral",
        ["basis_reference"],
        postgresql_where=sa.text("legal_basis = 'consent'"),
    )
    bind = op.get_bind()
    cipher = None
    for table, bound, seal in _TABLES:
        while True:
            rows = bind.execute(
                sa.text(f"select id, document from {table} where texts is null order by id limit {BATCH}")
            ).all()
            if not rows:
                break
            cipher = cipher or _cipher()
            updates = []
            for row_id, doc in rows:
                sealed, texts = seal(doc)
                blob, key_id = cipher.encrypt(texts, bound_to=f"{bound}:{doc['id']}")
                updates.append({"id": row_id, "doc": json.dumps(sealed, sort_keys=True), "texts": blob, "key": key_id})
            bind.execute(
                sa.text(
                    f"update {table} set document = cast(:doc as jsonb), texts = :texts, texts_key_id = :key "
                    "where id = :id"
                ),
                updates,
            )


def downgrade() -> None:
    bind = op.get_bind()
    cipher = None
    for table, bound, _ in _TABLES:
        rows = bind.execute(sa.text(f"select id, document, texts, texts_key_id from {table} where texts is not null"))
        updates = []
        for row_id, doc, blob, key_id in rows:
            cipher = cipher or _cipher()
            texts = cipher.decrypt(blob, key_id, bound_to=f"{bound}:{doc['id']}")
            plain = _open_consent(doc, texts) if table == "consent" else {**doc, **texts}
            updates.append({"id": row_id, "doc": json.dumps(plain, sort_keys=True)})
        if updates:
            bind.execute(sa.text(f"update {table} set document = cast(:doc as jsonb) where id = :id"), updates)
    op.drop_index("referral_consent_basis", table_name="referral")
    for table, _, _ in _TABLES:
        op.drop_column(table, "texts_key_id")
        op.drop_column(table, "texts")
