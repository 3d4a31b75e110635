"""Repositories for consents, necessity assessments and sharing decisions.

Free texts about people are stored encrypted (AES-256-GCM, the referral payloads' keys): a consent's
grantor references, evidence reference, information given, who withdrew it and why; a necessity
assessment's decision maker, justification and case reference. The ``document`` column keeps the rest,
which is all the decision engine needs, with each sealed text replaced by a marker that keeps only
whether it was given (``SEALED``) and, for grantor references, which grantors are the same person
(``#<n>``). So the hot path (``FACTS``) reads and decides without decrypting anything, and only the
reads that show a consent or an assessment open the ``texts`` column.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import audit as audit_db
from hub.db.engine import Statement
from hub.domain.audit import AuditRecord
from hub.domain.sharing import Consent, ConsentRefusal, Decision, NecessityAssessment


class PayloadCipher(Protocol):
    """What sealing needs of ``hub.keys.PayloadCipher``."""

    def encrypt(self, document: Any, *, bound_to: str) -> tuple[bytes, str]: ...

    def decrypt(self, blob: bytes, key_id: str, *, bound_to: str) -> Any: ...


SEALED = "[encrypted]"
"""What a sealed, non-empty free text reads as in a ``document`` column."""


def _mark(text: str | None) -> str | None:
    # Empty or blank stays as it is: the engine refuses an assessment with a blank justification.
    return text if text is None or not text.strip() else SEALED


def seal_consent(consent: Consent, cipher: PayloadCipher) -> tuple[str, bytes, str]:
    """The consent's ``document`` (free texts marked), its sealed ``texts`` and their key id."""
    information = consent.information_given.model_dump()
    texts = {
        "grantors": [g.reference for g in consent.grantors],
        "evidence_reference": consent.evidence_reference,
        "information_given": information,
        "withdrawn_by": consent.withdrawn_by,
        "withdrawal_reason": consent.withdrawal_reason,
    }
    blob, key_id = cipher.encrypt(texts, bound_to=f"consent:{consent.id}")
    document = consent.model_dump(mode="json")
    first: dict[str, int] = {}
    for index, grantor in enumerate(document["grantors"]):
        grantor["reference"] = f"#{first.setdefault(grantor['reference'], index)}"
    document["evidence_reference"] = _mark(consent.evidence_reference)
    document["information_given"] = {k: _mark(v) for k, v in information.items()}
    document["withdrawn_by"] = _mark(consent.withdrawn_by)
    document["withdrawal_reason"] = _mark(consent.withdrawal_reason)
    return json.dumps(document, sort_keys=True), blob, key_id


def open_consent(document: dict[str, Any], blob: bytes | None, key_id: str | None, cipher: PayloadCipher) -> Consent:
    """The consent with its free texts, from a row's ``document``, ``texts`` and ``texts_key_id``."""
    if blob is not None and key_id is not None:
        texts = cipher.decrypt(blob, key_id, bound_to=f"consent:{document['id']}")
        document = {
            **document,
            "grantors": [
                {**g, "reference": ref} for g, ref in zip(document["grantors"], texts["grantors"], strict=True)
            ],
            "evidence_reference": texts["evidence_reference"],
            "information_given": texts["information_given"],
            "withdrawn_by": texts["withdrawn_by"],
            "withdrawal_reason": texts["withdrawal_reason"],
        }
    return Consent.model_validate(document)


def seal_assessment(assessment: NecessityAssessment, cipher: PayloadCipher) -> tuple[str, bytes, str]:
    """The assessment's ``document`` (free texts marked), its sealed ``texts`` and their key id."""
    decided_by = assessment.decided_by.model_dump()
    texts = {
        "decided_by": decided_by,
        "justification": assessment.justification,
        "case_reference": assessment.case_reference,
    }
    blob, key_id = cipher.encrypt(texts, bound_to=f"necessity-assessment:{assessment.id}")
    document = assessment.model_dump(mode="json")
    document["decided_by"] = {k: _mark(v) for k, v in decided_by.items()}
    document["justification"] = _mark(assessment.justification)
    document["case_reference"] = _mark(assessment.case_reference)
    return json.dumps(document, sort_keys=True), blob, key_id


def open_assessment(
    document: dict[str, Any], blob: bytes | None, key_id: str | None, cipher: PayloadCipher
) -> NecessityAssessment:
    """The assessment with its free texts, from a row's ``document``, ``texts`` and ``texts_key_id``."""
    if blob is not None and key_id is not None:
        document = {**document, **cipher.decrypt(blob, key_id, bound_to=f"necessity-assessment:{document['id']}")}
    return NecessityAssessment.model_validate(document)


class ConsentRepository:
    def __init__(self, session: AsyncSession, cipher: PayloadCipher) -> None:
        self.session = session
        self.cipher = cipher

    async def add(self, consent: Consent, *, created_by: str) -> None:
        orgs = sorted(
            {
                *consent.from_parties.organisation_ids,
                *consent.to_parties.organisation_ids,
                consent.recording_organisation_id,
            }
        )
        types = sorted({*consent.from_parties.organisation_types, *consent.to_parties.organisation_types})
        document, texts, key_id = seal_consent(consent, self.cipher)
        await self.session.execute(
            text(
                """insert into consent (id, child_pseudonym, recording_organisation, valid_from, valid_until,
                   withdrawn_at, party_organisations, party_types, document, texts, texts_key_id, created_by)
                   values (:id, :child, :rec, :vf, :vu, :wa, :orgs, :types, cast(:doc as jsonb), :texts, :key,
                           :by)"""
            ),
            {
                "id": uuid.UUID(consent.id),
                "child": consent.child_pseudonym,
                "rec": consent.recording_organisation_id,
                "vf": consent.valid_from,
                "vu": consent.valid_until,
                "wa": consent.withdrawn_at,
                "orgs": orgs,
                "types": types,
                "doc": document,
                "texts": texts,
                "key": key_id,
                "by": created_by,
            },
        )

    async def get(self, consent_id: uuid.UUID, *, for_update: bool = False) -> Consent | None:
        sql = "select document, texts, texts_key_id from consent where id = :id" + (" for update" if for_update else "")
        row = (await self.session.execute(text(sql), {"id": consent_id})).first()
        return open_consent(row[0], row[1], row[2], self.cipher) if row else None

    async def for_child(self, candidates: Sequence[str]) -> list[Consent]:
        rows = await self.session.execute(
            text(
                """select document, texts, texts_key_id from consent where child_pseudonym = any(:c)
                   order by created_at, id"""
            ),
            {"c": list(candidates)},
        )
        return [open_consent(r[0], r[1], r[2], self.cipher) for r in rows]

    async def save_withdrawal(self, consent: Consent) -> None:
        document, texts, key_id = seal_consent(consent, self.cipher)
        await self.session.execute(
            text(
                """update consent set withdrawn_at = :wa, document = cast(:doc as jsonb), texts = :texts,
                   texts_key_id = :key where id = :id"""
            ),
            {"wa": consent.withdrawn_at, "doc": document, "texts": texts, "key": key_id, "id": uuid.UUID(consent.id)},
        )


async def consents_shared_by(session: AsyncSession, consent_ids: Sequence[str], organisation_id: str) -> set[str]:
    """The consents among ``consent_ids`` under which ``organisation_id`` took part in an actual share: it
    sent a referral on that consent, or one was delivered to it (index ``referral_consent_basis``)."""
    if not consent_ids:
        return set()
    rows = await session.execute(
        text(
            """select distinct basis_reference from referral
               where legal_basis = 'consent' and basis_reference = any(:ids)
                 and (sender_organisation = :org or (recipient_organisation = :org and delivered_at is not null))"""
        ),
        {"ids": list(consent_ids), "org": organisation_id},
    )
    return {r[0] for r in rows}


class AssessmentRepository:
    def __init__(self, session: AsyncSession, cipher: PayloadCipher) -> None:
        self.session = session
        self.cipher = cipher

    async def add(self, assessment: NecessityAssessment, *, created_by: str) -> None:
        document, texts, key_id = seal_assessment(assessment, self.cipher)
        await self.session.execute(
            text(
                """insert into necessity_assessment (id, child_pseudonym, organisation_id, decided_at, document,
                   texts, texts_key_id, created_by)
                   values (:id, :child, :org, :at, cast(:doc as jsonb), :texts, :key, :by)"""
            ),
            {
                "id": uuid.UUID(assessment.id),
                "child": assessment.child_pseudonym,
                "org": assessment.organisation_id,
                "at": assessment.decided_at,
                "doc": document,
                "texts": texts,
                "key": key_id,
                "by": created_by,
            },
        )

    async def for_child(self, candidates: Sequence[str], *, organisation_id: str) -> list[NecessityAssessment]:
        rows = await self.session.execute(
            text(
                """select document, texts, texts_key_id from necessity_assessment
                   where child_pseudonym = any(:c) and organisation_id = :org order by decided_at, id"""
            ),
            {"c": list(candidates), "org": organisation_id},
        )
        return [open_assessment(r[0], r[1], r[2], self.cipher) for r in rows]


class DecisionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        decision_id: uuid.UUID,
        decision: Decision,
        *,
        requested_by: str,
        from_org: str,
        to_org: str,
        child: str,
        purpose: str,
        dry_run: bool,
        explanation: dict[str, Any],
    ) -> None:
        await self.session.execute(
            text(
                """insert into sharing_decision (id, requested_by, from_organisation, to_organisation,
                   child_pseudonym, purpose, allowed, legal_basis, basis_reference, permitted_categories,
                   denied_categories, explanation, dry_run)
                   values (:id, :by, :f, :t, :c, :p, :a, :lb, :ref, :perm, :den, cast(:ex as jsonb), :dry)"""
            ),
            {
                "id": decision_id,
                "by": requested_by,
                "f": from_org,
                "t": to_org,
                "c": child,
                "p": purpose,
                "a": decision.allowed,
                "lb": decision.legal_basis,
                "ref": decision.basis_reference,
                "perm": list(decision.permitted_categories),
                "den": list(decision.denied_categories),
                "ex": json.dumps(explanation),
                "dry": dry_run,
            },
        )


# --------------------------------------------------------------------- the sharing decision's hot path
#
# ``POST /v1/sharing-decisions`` (and every referral) reads its facts in one statement and writes the
# decision with its audit entry in one more: two round trips instead of eight (eleven with the pool's
# pre-ping), on the driver connection where possible (``hub.db.engine.driver``), skipping the ORM.

FACTS = Statement(
    """
    select (select type from organisation where id = :sender) as sender_type,
           (select type from organisation where id = :recipient and active) as recipient_type,
           array(select document::text from consent
                 where child_pseudonym = any(:children) order by created_at, id) as consents,
           array(select document::text from necessity_assessment
                 where child_pseudonym = any(:children) and organisation_id = :sender
                 order by decided_at, id) as assessments,
           array(select json_build_object('id', id, 'child_pseudonym', child_pseudonym,
                                          'organisation_id', requesting_organisation, 'purposes', purposes,
                                          'refused_at', refused_at)::text
                 from consent_request
                 where child_pseudonym = any(:children) and requesting_organisation = :sender
                   and refused_at is not null
                 order by refused_at, id) as refusals,
           exists(select from protected_identity where child_pseudonym = any(:children)) as protected
    """
)


@dataclass(frozen=True)
class SharingFacts:
    """What a sharing decision needs from the database. ``None`` types: the organisation is unknown (a
    recipient also when it is deactivated: it is no party to a share)."""

    sender_type: str | None
    recipient_type: str | None
    consents: list[Consent]
    assessments: list[NecessityAssessment]
    refusals: list[ConsentRefusal]
    child_protected: bool = False  # the hub keeps a protected-identity mark for the child (sticky)


async def sharing_facts(
    on: AsyncSession | Any, *, sender: str, recipient: str, candidates: Sequence[str]
) -> SharingFacts:
    """Both parties' organisation types, the child's consents (in recording order), the sender's
    necessity assessments about the child (in decision order) and its refused consent requests about the
    child (in refusal order), as ``ConsentRepository.for_child``,
    ``AssessmentRepository.for_child`` and ``OrganisationRepository.get`` would give them. ``on``: a
    session or a driver connection (``hub.db.engine.driver``)."""
    row = await FACTS.fetchrow(on, {"sender": sender, "recipient": recipient, "children": list(candidates)})
    assert row is not None
    return facts_of(row)


FACTS_COLUMNS = 6
"""The columns of ``FACTS``, which other reads may put first in their rows (see :func:`facts_of`)."""


def facts_of(row: Sequence[Any]) -> SharingFacts:
    """The facts in the first ``FACTS_COLUMNS`` columns of ``row``, as ``FACTS`` selects them."""
    return SharingFacts(
        sender_type=row[0],
        recipient_type=row[1],
        consents=[_consent(doc) for doc in row[2]],
        assessments=[NecessityAssessment.model_validate_json(doc) for doc in row[3]],
        refusals=[ConsentRefusal.model_validate_json(doc) for doc in row[4]],
        child_protected=bool(row[5]),
    )


@functools.lru_cache(maxsize=2048)
def _consent(document: str) -> Consent:
    # Keyed by the stored document's exact text, so never stale: a withdrawal changes the text. Consents
    # are immutable; every decision about a child parses all of the child's, which this spares.
    return Consent.model_validate_json(document)


# The sticky protected-identity mark, written in the statement that records what the marking message decided
# (an empty insert when the message did not mark the child: the statement is the same either way).
MARK_CTE = """mark as (
        insert into protected_identity (child_pseudonym, marked_at)
        select cast({child} as text), cast({at} as timestamptz) where cast({child} as text) is not null
        on conflict (child_pseudonym) do nothing
    )"""


_RECORD_DECISION = Statement(
    """
    with decision as (
        insert into sharing_decision (id, requested_by, from_organisation, to_organisation,
            child_pseudonym, purpose, allowed, legal_basis, basis_reference, permitted_categories,
            denied_categories, explanation, dry_run)
        values (:id, :by, :f, :t, :c, :p, :a, :lb, :ref, :perm, :den, cast(:ex as jsonb), :dry)
    ), """
    + MARK_CTE.format(child=":mark", at=":mark_at")
    + ", "
    + audit_db.APPEND_CTES
    + audit_db.APPEND_INSERT
)


async def record_decision(
    on: AsyncSession | Any,
    *,
    decision_id: uuid.UUID,
    decision: Decision,
    requested_by: str,
    from_org: str,
    to_org: str,
    child: str,
    purpose: str,
    dry_run: bool,
    explanation: dict[str, Any],
    audit: AuditRecord,
    mark_protected: bool = False,
) -> int:
    """Insert the decision (as :meth:`DecisionRepository.add`) and append ``audit`` (as
    :func:`hub.db.audit.append`: a plain insert, queued for the sealer) in one statement, so both or
    neither are written; returns the entry id.

    ``on`` a session: in its transaction (opened if needed), committed by the caller. ``on`` a driver
    connection (``hub.db.engine.driver``) without a transaction open: the statement commits by itself.
    ``mark_protected``: the message marked the child's identity protected; the mark is kept (sticky)."""
    params = {
        "mark": child if mark_protected else None,
        "mark_at": audit.occurred_at,
        "id": decision_id,
        "by": requested_by,
        "f": from_org,
        "t": to_org,
        "c": child,
        "p": purpose,
        "a": decision.allowed,
        "lb": decision.legal_basis,
        "ref": decision.basis_reference,
        "perm": list(decision.permitted_categories),
        "den": list(decision.denied_categories),
        "ex": json.dumps(explanation),
        "dry": dry_run,
        **audit_db.append_params(audit),
    }
    return int(await _RECORD_DECISION.fetchval(on, params))
