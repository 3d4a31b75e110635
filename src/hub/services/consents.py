"""Recording, reading, listing and withdrawing consents. Consents are never deleted.

Who may read a consent (:func:`may_read`): the organisation that recorded it, an organisation it names
by id, and an organisation of a type it names *once that organisation has taken part in a share under
it* (sent a referral on it, or had one delivered to it). Naming a type alone shows a consent to no one:
otherwise every BUP clinic of the county could read every consent naming "bup". Only the recording
organisation withdraws. Anything else is told "not found", exactly as for an id that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.lawful import ConsentRepository, consents_shared_by
from hub.db.repositories import OrganisationRepository
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import Conflict, FieldError, InvalidInput, NotFound, NotPermitted
from hub.domain.policy import Policy, swedish_day
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
from hub.keys import PayloadCipher
from hub.runtime import Runtime
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


async def record_consent(*, actor: Actor, draft: ConsentDraft, runtime: Runtime) -> ConsentView:
    """Record a consent with its audit entry, one commit; its free texts (grantor references, evidence,
    information given) encrypted."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        consent = await _new_consent(uow.session, actor, draft, runtime)
        await ConsentRepository(uow.session, runtime.cipher).add(consent, created_by=actor.principal.subject)
        await audit(
            uow.session,
            actor,
            AuditAction.CONSENT_RECORDED,
            child_pseudonym=consent.child_pseudonym,
            legal_basis="consent",
            entity_type="Consent",
            entity_id=consent.id,
            details={"categories": sorted(consent.data_categories), "purposes": sorted(consent.purposes)},
        )
        await uow.commit()
    return ConsentView(consent, consent_state(consent, actor.now))


async def _new_consent(session: AsyncSession, actor: Actor, draft: ConsentDraft, runtime: Runtime) -> Consent:
    """The consent ``draft`` describes, checked against the vocabulary, the registry and the policy."""
    child = identify_child(
        draft.personal_identity_number,
        pseudonymizer=runtime.pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    await check_parties(session, draft, runtime.vocabulary)
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
    policy = policy_in_force(actor, runtime)
    problems = check_consent(consent, policy=policy, now=actor.now)
    if problems:
        raise InvalidInput(
            "The consent cannot be recorded: " + "; ".join(p.en for p in problems),
            errors=[FieldError(p.pointer, p.en, p.code) for p in problems],
        )
    return consent


def policy_in_force(actor: Actor, runtime: Runtime) -> Policy:
    """The policy in force on the Swedish day of the time the hub sees (its dated rules applied)."""
    return runtime.policy.in_force(swedish_day(actor.now))


async def check_parties(session: AsyncSession, draft: ConsentDraft, vocabulary: Vocabulary) -> None:
    """``InvalidInput`` naming every unknown code (categories, purposes, organisation types) and every
    organisation id not in the registry; what a consent and a consent request both check."""
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


async def may_read(session: AsyncSession, consents: list[Consent], organisation_id: str) -> list[Consent]:
    """The consents ``organisation_id`` may read (see the module docstring), in their order."""
    readable = {c.id for c in consents if c.visible_to(organisation_id)}
    rest = [c for c in consents if c.id not in readable]
    if rest:
        org = await OrganisationRepository(session).get(organisation_id)
        typed = [
            c.id
            for c in rest
            if org is not None and org.type in c.from_parties.organisation_types | c.to_parties.organisation_types
        ]
        readable |= await consents_shared_by(session, typed, organisation_id)
    return [c for c in consents if c.id in readable]


async def get_consent(*, actor: Actor, consent_id: str, runtime: Runtime) -> ConsentView:
    """A consent the caller's organisation may read (the read audited, one commit); 404 otherwise (even
    if it exists)."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        consent = await _visible(uow.session, actor, consent_id, runtime.cipher)
        await _audit_read(uow.session, actor, consent)
        await uow.commit()
    return ConsentView(consent, consent_state(consent, actor.now))


async def _audit_read(session: AsyncSession, actor: Actor, consent: Consent) -> None:
    await audit(
        session,
        actor,
        AuditAction.CONSENT_READ,
        child_pseudonym=consent.child_pseudonym,
        legal_basis="consent",
        entity_type="Consent",
        entity_id=consent.id,
    )


async def _visible(
    session: AsyncSession, actor: Actor, consent_id: str, cipher: PayloadCipher, *, for_update: bool = False
) -> Consent:
    try:
        cid = uuid.UUID(consent_id)
    except ValueError:
        raise NotFound("No such consent.") from None
    consent = await ConsentRepository(session, cipher).get(cid, for_update=for_update)
    if consent is None or not await may_read(session, [consent], actor.organisation_id):
        raise NotFound("No such consent.")
    return consent


async def list_consents(*, actor: Actor, personal_identity_number: str, runtime: Runtime) -> list[ConsentView]:
    """The child's consents that the caller's organisation may read (the search audited, one commit)."""
    child = identify_child(
        personal_identity_number,
        pseudonymizer=runtime.pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    async with UnitOfWork.of(runtime.sessions) as uow:
        consents = await ConsentRepository(uow.session, runtime.cipher).for_child(child.candidates)
        found = await may_read(uow.session, consents, actor.organisation_id)
        await audit(
            uow.session,
            actor,
            AuditAction.CONSENT_LISTED,
            child_pseudonym=child.pseudonym,
            legal_basis="consent",
            entity_type="Consent",
            details={"count": len(found)},
        )
        await uow.commit()
    return [ConsentView(c, consent_state(c, actor.now)) for c in found]


async def withdraw(
    *,
    actor: Actor,
    consent_id: str,
    withdrawn_by: str,
    reason: str,
    runtime: Runtime,
    withdrawn_at: datetime | None = None,
) -> ConsentView:
    """Withdraw now (or at a past moment the source system recorded); effective for every later decision.
    Only the recording organisation withdraws (a party that may read it is told so: 403). One commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        withdrawn = await _withdraw(
            uow.session, actor, consent_id, by=withdrawn_by, reason=reason, at=withdrawn_at, cipher=runtime.cipher
        )
        await uow.commit()
    return ConsentView(withdrawn, consent_state(withdrawn, actor.now))


async def _withdraw(
    session: AsyncSession,
    actor: Actor,
    consent_id: str,
    *,
    by: str,
    reason: str,
    at: datetime | None,
    cipher: PayloadCipher,
) -> Consent:
    consent = await _visible(session, actor, consent_id, cipher, for_update=True)
    if consent.recording_organisation_id != actor.organisation_id:
        raise NotPermitted(
            "Only the organisation that recorded a consent may withdraw it; tell that organisation of the withdrawal."
        )
    at = at or actor.now
    if at > actor.now:
        raise InvalidInput(
            "A withdrawal cannot be dated in the future.",
            errors=[FieldError("/withdrawn_at", "must not be in the future")],
        )
    try:
        withdrawn = withdraw_consent(consent, at=at, by=by, reason=reason)
    except ConsentAlreadyWithdrawn:
        raise Conflict("The consent is already withdrawn.") from None
    await ConsentRepository(session, cipher).save_withdrawal(withdrawn)
    await audit(
        session,
        actor,
        AuditAction.CONSENT_WITHDRAWN,
        child_pseudonym=consent.child_pseudonym,
        legal_basis="consent",
        entity_type="Consent",
        entity_id=consent.id,
        # Not who withdrew (a free text about a person, sealed in the consent): when it takes effect.
        details={"withdrawn_at": at.isoformat()},
    )
    return withdrawn
