"""The consent requests' table (migration 0015): free texts sealed like consents' (``hub.db.lawful``).

Sealed: each grantor's reference, evidence reference and answer method, and the information given. The
``document`` keeps the rest, with grantor references as ``#<n>`` and the other texts as ``[encrypted]``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.lawful import SEALED, PayloadCipher
from hub.domain.sharing.requests import ConsentRequest


def _bound(request_id: str) -> str:
    return f"consent-request:{request_id}"


def seal_request(request: ConsentRequest, cipher: PayloadCipher) -> tuple[str, bytes, str]:
    """The request's ``document`` (free texts marked), its sealed ``texts`` and their key id."""
    texts = {
        "grantors": [
            {"reference": g.reference, "evidence_reference": g.evidence_reference, "method": g.method}
            for g in request.grantors
        ],
        "information_given": request.information_given.model_dump(),
    }
    blob, key_id = cipher.encrypt(texts, bound_to=_bound(request.id))
    document = request.model_dump(mode="json")
    for index, grantor in enumerate(document["grantors"]):
        grantor["reference"] = f"#{index}"
        for key in ("evidence_reference", "method"):
            grantor[key] = None if grantor[key] is None else SEALED
    document["information_given"] = {k: SEALED for k in document["information_given"]}
    return json.dumps(document, sort_keys=True), blob, key_id


def open_request(document: dict[str, Any], blob: bytes, key_id: str, cipher: PayloadCipher) -> ConsentRequest:
    """The request with its free texts, from a row's ``document``, ``texts`` and ``texts_key_id``."""
    texts = cipher.decrypt(blob, key_id, bound_to=_bound(document["id"]))
    grantors = [{**g, **opened} for g, opened in zip(document["grantors"], texts["grantors"], strict=True)]
    return ConsentRequest.model_validate(
        {**document, "grantors": grantors, "information_given": texts["information_given"]}
    )


class ConsentRequestRepository:
    """Consent requests; never commits (the use case's unit of work does)."""

    def __init__(self, session: AsyncSession, cipher: PayloadCipher) -> None:
        self.session = session
        self.cipher = cipher

    async def add(self, request: ConsentRequest, *, created_by: str) -> None:
        document, texts, key_id = seal_request(request, self.cipher)
        await self.session.execute(
            text(
                """insert into consent_request (id, child_pseudonym, requesting_organisation, purposes, answer_by,
                   refused_at, consent_id, document, texts, texts_key_id, created_by)
                   values (:id, :child, :org, :purposes, :answer_by, null, null, cast(:doc as jsonb), :texts,
                           :key, :by)"""
            ),
            {
                "id": uuid.UUID(request.id),
                "child": request.child_pseudonym,
                "org": request.requesting_organisation_id,
                "purposes": sorted(request.purposes),
                "answer_by": request.answer_by,
                "doc": document,
                "texts": texts,
                "key": key_id,
                "by": created_by,
            },
        )

    async def get(self, request_id: uuid.UUID, *, for_update: bool = False) -> ConsentRequest | None:
        sql = "select document, texts, texts_key_id from consent_request where id = :id"
        row = (
            await self.session.execute(text(sql + (" for update" if for_update else "")), {"id": request_id})
        ).first()
        return None if row is None else open_request(row[0], row[1], row[2], self.cipher)

    async def save(self, request: ConsentRequest) -> None:
        """The request's answers, first refusal and linked consent, as they are now."""
        document, texts, key_id = seal_request(request, self.cipher)
        await self.session.execute(
            text(
                """update consent_request set document = cast(:doc as jsonb), texts = :texts, texts_key_id = :key,
                   refused_at = :refused_at, consent_id = :consent where id = :id"""
            ),
            {
                "doc": document,
                "texts": texts,
                "key": key_id,
                "refused_at": request.refused_at(),
                "consent": None if request.consent_id is None else uuid.UUID(request.consent_id),
                "id": uuid.UUID(request.id),
            },
        )
