"""Consent requests to a child's guardians: make one, record each answer, read one. One commit each.

Only the requesting organisation sees or answers its requests (anyone else: 404, as for an id that does
not exist). Answers come from that organisation's e-service, which did the signing: the hub records the
evidence reference, time and method, never a signature. The answer that completes the request records the
consent (``hub.services.consents``' rules, :func:`check_consent`) in the same commit and links it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.consent_requests import ConsentRequestRepository
from hub.db.lawful import ConsentRepository
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.errors import Conflict, FieldError, Gone, InvalidInput, NotFound
from hub.domain.policy import Policy
from hub.domain.sharing import InformationGiven, PartyScope, check_consent
from hub.domain.sharing.requests import (
    AnswerNotAllowed,
    ConsentRequest,
    GrantorNotListed,
    RequestedGrantor,
    RequestExpired,
    RequestState,
    child_must_agree,
)
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.children import identify_child
from hub.services.consents import ConsentDraft, check_parties, policy_in_force
from hub.services.context import Actor

DEFAULT_ANSWER_PERIOD = timedelta(days=30)


@dataclass(frozen=True)
class RequestDraft:
    """What a caller sends to ask for consent (the API's body, already shape-validated)."""

    personal_identity_number: str
    guardian_count: int
    guardians: list[str]
    child_reference: str | None
    data_categories: list[str]
    from_parties: dict[str, list[str]]
    to_parties: dict[str, list[str]]
    purposes: list[str]
    valid_from: datetime
    valid_until: datetime
    information_given: dict[str, str]
    answer_by: datetime | None = None


@dataclass(frozen=True)
class AnswerDraft:
    role: str
    reference: str
    agreed: bool
    evidence_reference: str
    method: str
    answered_at: datetime | None = None
    categories: list[str] | None = None


@dataclass(frozen=True)
class RequestView:
    request: ConsentRequest
    state: RequestState


async def request_consent(*, actor: Actor, draft: RequestDraft, runtime: Runtime) -> RequestView:
    """Make a consent request (each grantor pending) with its audit entry, one commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        request = await _new_request(uow.session, actor, draft, runtime)
        await ConsentRequestRepository(uow.session, runtime.cipher).add(request, created_by=actor.principal.subject)
        await audit(
            uow.session,
            actor,
            AuditAction.CONSENT_REQUESTED,
            child_pseudonym=request.child_pseudonym,
            legal_basis="consent",
            entity_type="ConsentRequest",
            entity_id=request.id,
            details={"categories": sorted(request.data_categories), "purposes": sorted(request.purposes)},
        )
        await uow.commit()
    return RequestView(request, request.state(actor.now))


async def _new_request(session: AsyncSession, actor: Actor, draft: RequestDraft, runtime: Runtime) -> ConsentRequest:
    child = identify_child(
        draft.personal_identity_number,
        pseudonymizer=runtime.pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    as_consent = ConsentDraft(
        personal_identity_number=draft.personal_identity_number,
        guardian_count=draft.guardian_count,
        grantors=[],
        data_categories=draft.data_categories,
        from_parties=draft.from_parties,
        to_parties=draft.to_parties,
        purposes=draft.purposes,
        valid_from=draft.valid_from,
        valid_until=draft.valid_until,
        information_given=draft.information_given,
        evidence_reference="-",
    )
    await check_parties(session, as_consent, runtime.vocabulary)  # the consent's vocabulary and registry checks
    policy = policy_in_force(actor, runtime)
    errors = _grantor_errors(draft, policy, child.age)
    answer_by = draft.answer_by or actor.now + DEFAULT_ANSWER_PERIOD
    if answer_by <= actor.now:
        errors.append(FieldError("/answer_by", "must be in the future"))
    if errors:
        raise InvalidInput("The consent request cannot be made.", errors=errors)
    grantors = [RequestedGrantor(role="guardian", reference=g) for g in draft.guardians]
    if draft.child_reference is not None:
        grantors.append(RequestedGrantor(role="child", reference=draft.child_reference))
    categories = frozenset(draft.data_categories)
    request = ConsentRequest(
        id=str(uuid.uuid4()),
        child_pseudonym=child.pseudonym,
        requesting_organisation_id=actor.organisation_id,
        guardian_count=draft.guardian_count,
        grantors=tuple(grantors),
        child_required=child_must_agree(policy, child.age, categories),
        data_categories=categories,
        from_parties=PartyScope.model_validate(draft.from_parties),
        to_parties=PartyScope.model_validate(draft.to_parties),
        purposes=frozenset(draft.purposes),
        valid_from=draft.valid_from,
        valid_until=draft.valid_until,
        information_given=InformationGiven.model_validate(draft.information_given),
        requested_at=actor.now,
        answer_by=answer_by,
    )
    # The consent the request would make if everyone agreed must be one the hub would record.
    # (Nobody has agreed yet, so the grantor checks wait for the answers.)
    preview = request.consent(request.id)
    problems = [p for p in check_consent(preview, policy=policy, now=actor.now) if p.pointer != "/grantors"]
    if problems:
        raise InvalidInput(
            "The consent request cannot be made: " + "; ".join(p.en for p in problems),
            errors=[FieldError(p.pointer, p.en, p.code) for p in problems],
        )
    return request


def _grantor_errors(draft: RequestDraft, policy: Policy, age: int) -> list[FieldError]:
    errors = []
    if len(draft.guardians) != draft.guardian_count or len(set(draft.guardians)) != len(draft.guardians):
        errors.append(FieldError("/guardians", "list each guardian with custody once (guardian_count of them)"))
    required = child_must_agree(policy, age, frozenset(draft.data_categories))
    if required and draft.child_reference is None:
        errors.append(FieldError("/child/reference", "the child's own consent is required at this age: name the child"))
    return errors


async def answer_request(*, actor: Actor, request_id: str, draft: AnswerDraft, runtime: Runtime) -> RequestView:
    """Record one grantor's answer (audited); the answer that completes the request records the consent
    and links it, in the same commit. 410 after the answer period, 422 for a grantor not listed, 409 for
    a second answer or a closed request."""
    at = draft.answered_at or actor.now
    if at > actor.now:
        raise InvalidInput("An answer cannot be dated in the future.", errors=[FieldError("/answered_at", "future")])
    async with UnitOfWork.of(runtime.sessions) as uow:
        repository = ConsentRequestRepository(uow.session, runtime.cipher)
        request = await _own(repository, actor, request_id, for_update=True)
        request = _answered(request, draft, at)
        if request.complete(policy_in_force(actor, runtime)):
            request = await _record_consent(uow.session, actor, request, runtime)
        await repository.save(request)
        await audit(
            uow.session,
            actor,
            AuditAction.CONSENT_REQUEST_ANSWERED,
            child_pseudonym=request.child_pseudonym,
            legal_basis="consent",
            entity_type="ConsentRequest",
            entity_id=request.id,
            # Not who answered or the evidence (free texts, sealed in the request): the answer and its time.
            details={"role": draft.role, "agreed": draft.agreed, "answered_at": at.isoformat()},
        )
        await uow.commit()
    return RequestView(request, request.state(actor.now))


def _answered(request: ConsentRequest, draft: AnswerDraft, at: datetime) -> ConsentRequest:
    try:
        return request.answer(
            role=draft.role,
            reference=draft.reference,
            agreed=draft.agreed,
            at=at,
            evidence_reference=draft.evidence_reference,
            method=draft.method,
            categories=None if draft.categories is None else frozenset(draft.categories),
        )
    except RequestExpired:
        raise Gone("The consent request's answer period has ended; make a new request if it is still needed.") from None
    except GrantorNotListed as exc:
        raise InvalidInput(
            "The answer names a grantor or categories the request does not list.",
            errors=[FieldError("/reference" if "grantor" in str(exc) else "/categories", str(exc), "not-listed")],
        ) from None
    except AnswerNotAllowed:
        raise Conflict("This grantor has already answered, or the request is closed.") from None


async def _record_consent(
    session: AsyncSession, actor: Actor, request: ConsentRequest, runtime: Runtime
) -> ConsentRequest:
    consent = request.consent(str(uuid.uuid4()))
    problems = check_consent(consent, policy=policy_in_force(actor, runtime), now=actor.now)
    if problems:
        raise InvalidInput(
            "The consent the answers make cannot be recorded: " + "; ".join(p.en for p in problems),
            errors=[FieldError(p.pointer, p.en, p.code) for p in problems],
        )
    await ConsentRepository(session, runtime.cipher).add(consent, created_by=actor.principal.subject)
    await audit(
        session,
        actor,
        AuditAction.CONSENT_RECORDED,
        child_pseudonym=consent.child_pseudonym,
        legal_basis="consent",
        entity_type="Consent",
        entity_id=consent.id,
        details={"categories": sorted(consent.data_categories), "consent_request": request.id},
    )
    return request.linked(consent.id)


async def get_request(*, actor: Actor, request_id: str, runtime: Runtime) -> RequestView:
    """The caller's organisation's request (the read audited, one commit); 404 for anyone else's."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        request = await _own(ConsentRequestRepository(uow.session, runtime.cipher), actor, request_id)
        await audit(
            uow.session,
            actor,
            AuditAction.CONSENT_REQUEST_READ,
            child_pseudonym=request.child_pseudonym,
            legal_basis="consent",
            entity_type="ConsentRequest",
            entity_id=request.id,
        )
        await uow.commit()
    return RequestView(request, request.state(actor.now))


async def _own(repository: ConsentRequestRepository, actor: Actor, request_id: str, **kw: Any) -> ConsentRequest:
    try:
        rid = uuid.UUID(request_id)
    except ValueError:
        raise NotFound("No such consent request.") from None
    request = await repository.get(rid, **kw)
    if request is None or request.requesting_organisation_id != actor.organisation_id:
        raise NotFound("No such consent request.")
    return request
