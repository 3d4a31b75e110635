"""Recording, reading, listing and withdrawing consents. Consents are never deleted."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.lawful import ConsentRepository
from hub.db.repositories import OrganisationRepository
from hub.domain.audit import AuditAction
from hub.domain.errors import Conflict, FieldError, InvalidInput, NotFound
from hub.domain.identity import Pseudonymizer
from hub.domain.policy import Policy
from hub.domain.sharing import (
    Consent,
    ConsentAlreadyWithdrawn,
    ConsentState,
    Grantor,
    InformationGiven,
    PartyScope,
    check_consent,
    consent_state,
    withdraw_consent,
)
from hub.domain.vocabulary import Vocabulary
from hub.services.auditing import audit
from hub.services.children import identify_child
from hub.services.codes import unknown_codes
from hub.services.context import Actor


@dataclass(frozen=True)
class ConsentDraft:
    """What a caller sends to record a consent (the API's body, already shape-validated)."""

    personal_identity_number: str
    guardian_count: int
    grantors: list[dict[str, Any]]
    data_categories: list[str]
    from_parties: dict[str, list[str]]
    to_parties: dict[str, list[str]]
    purposes: list[str]
    valid_from: datetime
    valid_until: datetime
    information_given: dict[str, str]
    evidence_reference: str


@dataclass(frozen=True)
class ConsentView:
    consent: Consent
    state: ConsentState


def _vocabulary_errors(draft: ConsentDraft, vocabulary: Vocabulary) -> list[FieldError]:
    errors = unknown_codes(vocabulary, "data-category", draft.data_categories, "/data_categories")
    errors += unknown_codes(vocabulary, "referral-kind", draft.purposes, "/purposes")
    for side in ("from_parties", "to_parties"):
        scope = getattr(draft, side)
        errors += unknown_codes(
            vocabulary, "organisation-type", scope.get("organisation_types", []), f"/{side}/organisation_types"
        )
    for i, grantor in enumerate(draft.grantors):
        if grantor.get("categories") is not None:
            errors += unknown_codes(vocabulary, "data-category", grantor["categories"], f"/grantors/{i}/categories")
    return errors


async def record_consent(
    session: AsyncSession,
    *,
    actor: Actor,
    draft: ConsentDraft,
    vocabulary: Vocabulary,
    policy: Policy,
    pseudonymizer: Pseudonymizer,
) -> ConsentView:
    child = identify_child(
        draft.personal_identity_number,
        pseudonymizer=pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    errors = _vocabulary_errors(draft, vocabulary)
    orgs = OrganisationRepository(session)
    for side in ("from_parties", "to_parties"):
        for i, org_id in enumerate(getattr(draft, side).get("organisation_ids", [])):
            if await orgs.get(org_id) is None:
                errors.append(
                    FieldError(
                        f"/{side}/organisation_ids/{i}",
                        f"no organisation {org_id!r} in the registry",
                        "unknown-organisation",
                    )
                )
    if errors:
        raise InvalidInput(f"The consent names {len(errors)} unknown code(s) or organisation(s).", errors=errors)
    consent = Consent(
        id=str(uuid.uuid4()),
        child_pseudonym=child.pseudonym,
        recording_organisation_id=actor.organisation_id,
        grantors=tuple(Grantor.model_validate(g) for g in draft.grantors),
        guardian_count=draft.guardian_count,
        data_categories=frozenset(draft.data_categories),
        from_parties=PartyScope.model_validate(draft.from_parties),
        to_parties=PartyScope.model_validate(draft.to_parties),
        purposes=frozenset(draft.purposes),
        valid_from=draft.valid_from,
        valid_until=draft.valid_until,
        information_given=InformationGiven.model_validate(draft.information_given),
        evidence_reference=draft.evidence_reference,
    )
    problems = check_consent(consent, policy=policy, now=actor.now)
    if problems:
        raise InvalidInput(
            "The consent cannot be recorded: " + "; ".join(p.en for p in problems),
            errors=[FieldError(p.pointer, p.en, p.code) for p in problems],
        )
    await ConsentRepository(session).add(consent, created_by=actor.principal.subject)
    await audit(
        session,
        actor,
        AuditAction.CONSENT_RECORDED,
        child_pseudonym=consent.child_pseudonym,
        legal_basis="consent",
        entity_type="Consent",
        entity_id=consent.id,
        details={"categories": sorted(consent.data_categories), "purposes": sorted(consent.purposes)},
    )
    await session.commit()
    return ConsentView(consent, consent_state(consent, actor.now))


async def _party_types(session: AsyncSession, organisation_id: str) -> str | None:
    org = await OrganisationRepository(session).get(organisation_id)
    return org.type if org else None


def _is_party(consent: Consent, organisation_id: str, organisation_type: str | None) -> bool:
    if consent.recording_organisation_id == organisation_id:
        return True
    for scope in (consent.from_parties, consent.to_parties):
        if organisation_id in scope.organisation_ids or (
            organisation_type is not None and organisation_type in scope.organisation_types
        ):
            return True
    return False


async def get_consent(session: AsyncSession, *, actor: Actor, consent_id: str) -> ConsentView:
    """A consent the caller's organisation recorded or is party to; 404 otherwise (even if it exists)."""
    consent = await _visible(session, actor, consent_id)
    await audit(
        session,
        actor,
        AuditAction.CONSENT_READ,
        child_pseudonym=consent.child_pseudonym,
        legal_basis="consent",
        entity_type="Consent",
        entity_id=consent.id,
    )
    await session.commit()
    return ConsentView(consent, consent_state(consent, actor.now))


async def _visible(session: AsyncSession, actor: Actor, consent_id: str, *, for_update: bool = False) -> Consent:
    try:
        cid = uuid.UUID(consent_id)
    except ValueError:
        raise NotFound("No such consent.") from None
    consent = await ConsentRepository(session).get(cid, for_update=for_update)
    if consent is None or not _is_party(
        consent, actor.organisation_id, await _party_types(session, actor.organisation_id)
    ):
        raise NotFound("No such consent.")
    return consent


async def list_consents(
    session: AsyncSession, *, actor: Actor, personal_identity_number: str, pseudonymizer: Pseudonymizer
) -> list[ConsentView]:
    """The child's consents that the caller's organisation recorded or is party to."""
    child = identify_child(
        personal_identity_number,
        pseudonymizer=pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    org_type = await _party_types(session, actor.organisation_id)
    found = [
        c
        for c in await ConsentRepository(session).for_child(child.candidates)
        if _is_party(c, actor.organisation_id, org_type)
    ]
    await audit(
        session,
        actor,
        AuditAction.CONSENT_LISTED,
        child_pseudonym=child.pseudonym,
        legal_basis="consent",
        entity_type="Consent",
        details={"count": len(found)},
    )
    await session.commit()
    return [ConsentView(c, consent_state(c, actor.now)) for c in found]


async def withdraw(
    session: AsyncSession,
    *,
    actor: Actor,
    consent_id: str,
    withdrawn_by: str,
    reason: str,
    withdrawn_at: datetime | None = None,
) -> ConsentView:
    """Withdraw now (or at a past moment the source system recorded); effective for every later decision."""
    consent = await _visible(session, actor, consent_id, for_update=True)
    at = withdrawn_at or actor.now
    if at > actor.now:
        raise InvalidInput(
            "A withdrawal cannot be dated in the future.",
            errors=[FieldError("/withdrawn_at", "must not be in the future")],
        )
    try:
        withdrawn = withdraw_consent(consent, at=at, by=withdrawn_by, reason=reason)
    except ConsentAlreadyWithdrawn:
        raise Conflict("The consent is already withdrawn.") from None
    repo = ConsentRepository(session)
    await repo.save_withdrawal(withdrawn)
    await audit(
        session,
        actor,
        AuditAction.CONSENT_WITHDRAWN,
        child_pseudonym=consent.child_pseudonym,
        legal_basis="consent",
        entity_type="Consent",
        entity_id=consent.id,
        details={"withdrawn_by": withdrawn_by},
    )
    await session.commit()
    return ConsentView(withdrawn, consent_state(withdrawn, actor.now))
