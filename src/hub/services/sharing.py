"""The sharing decision as a use case: load the facts, ask the engine, record and audit the answer.

Referrals (and the dry run ``POST /v1/sharing-decisions``) go through :func:`decide_share`, so the
same engine, facts and audit apply to a real share and to the question "may we send this?".
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.lawful import AssessmentRepository, SharingFacts, record_decision, sharing_facts
from hub.db.repositories import OrganisationRepository
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction, AuditOutcome, AuditRecord
from hub.domain.errors import FieldError, InvalidInput, NotPermitted
from hub.domain.hsa import professional_reference_problem
from hub.domain.policy import swedish_day
from hub.domain.sharing import (
    Consent,
    ConsentRefusal,
    Decision,
    DecisionMaker,
    NecessityAssessment,
    Party,
    Reason,
    Remedy,
    ShareRequest,
    cite,
    cited,
    decide,
)
from hub.domain.vocabulary import LegalBasesDoc, Vocabulary
from hub.runtime import Runtime
from hub.services.auditing import audit, audit_record
from hub.services.children import Child, identify_child
from hub.services.codes import unknown_codes
from hub.services.context import Actor
from hub.services.rate_limits import SharingLimits, for_runtime

_Fact = TypeVar("_Fact", Consent, NecessityAssessment, ConsentRefusal)


@dataclass(frozen=True)
class ShareQuestion:
    to_organisation: str
    personal_identity_number: str
    purpose: str
    data_categories: list[str]
    legal_basis: str | None = None
    basis_reference: str | None = None
    child_protected: bool = False  # the sender marks the child's identity protected (hub.domain.protected_identity)


@dataclass(frozen=True)
class RecordedDecision:
    id: uuid.UUID
    decided_at: datetime
    from_organisation: str
    to_organisation: str
    purpose: str
    decision: Decision
    recorded: bool = True
    child_protected: bool = False  # the child's identity is protected (marked now or kept): for the marker


async def _party(session: AsyncSession, organisation_id: str, pointer: str | None) -> Party:
    org = await OrganisationRepository(session).get(organisation_id)
    return _registered(organisation_id, None if org is None else org.type, pointer)


def _registered(organisation_id: str, organisation_type: str | None, pointer: str | None) -> Party:
    """The party, or the error for an organisation not in the registry (``pointer`` None: the caller's)."""
    if organisation_type is None:
        if pointer is None:
            raise NotPermitted("The caller's organisation is not in the hub's registry; ask an admin to register it.")
        raise InvalidInput(
            f"No organisation {organisation_id!r} in the registry.",
            errors=[FieldError(pointer, "unknown organisation", "unknown-organisation")],
        )
    return Party(organisation_id=organisation_id, organisation_type=organisation_type)


def explanation(decision: Decision) -> dict[str, object]:
    """A decision's reasons and remedies, and the statute it cited, as the decision row keeps them (JSON)."""
    kept: dict[str, object] = {
        "reasons": [_fields(r) for r in decision.reasons],
        "remedies": [_fields(r) for r in decision.remedies],
    }
    if decision.citation is not None:
        kept["citation"] = decision.citation.as_json()
    return kept


def legal_bases(vocabulary: Vocabulary) -> LegalBasesDoc:
    """The default version of the ``legal-bases`` vocabulary, which new decisions cite."""
    doc = vocabulary.get("legal-bases")
    if not isinstance(doc, LegalBasesDoc):  # the vocabulary loader guarantees the kind
        raise TypeError("legal-bases is not a legal-bases document")
    return doc


def _fields(item: Reason | Remedy) -> dict[str, object]:
    # dataclasses.asdict without its deep copy (strings, None and tuples of strings need none): the same JSON.
    return {name: getattr(item, name) for name in _FIELD_NAMES[type(item)]}


_FIELD_NAMES = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in (Reason, Remedy)}


async def decide_share(
    *,
    actor: Actor,
    question: ShareQuestion,
    runtime: Runtime,
    dry_run: bool,
    limits: SharingLimits | None = None,
    record_if: Callable[[Decision], bool] | None = None,
) -> RecordedDecision:
    """Decide, record the decision and audit it (refusals too): one use case, one commit. The sender is
    always the caller's org. ``limits``: the caller's rate limits (``hub.services.rate_limits``); ``None``
    for the hub's own re-checks, which no caller asked for. ``record_if``: the hub's send-time re-check
    records a decision only when its outcome changed (``hub.services.delivery.messages``); a decision not
    recorded has ``recorded`` False and its id is nowhere."""
    child = identify_child(
        question.personal_identity_number,
        pseudonymizer=runtime.pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    _check_codes(question, runtime.vocabulary)
    # One round trip for every fact, one more for the decision and its audit entry (hub.db.lawful), on a
    # connection of the pool's: that statement commits by itself (the use case's one commit), so the
    # chain head is locked for that statement only.
    async with UnitOfWork.of(runtime.sessions) as uow, uow.statement() as connection:
        facts = await sharing_facts(
            connection, sender=actor.organisation_id, recipient=question.to_organisation, candidates=child.candidates
        )
        decision_id = uuid.uuid4()
        decision, entry = decide_on_facts(
            facts,
            question,
            actor=actor,
            child=child,
            runtime=runtime,
            decision_id=decision_id,
            dry_run=dry_run,
            limits=limits,
        )
        parties = (actor.organisation_id, question.to_organisation)
        protected = question.child_protected or facts.child_protected
        answer = RecordedDecision(decision_id, actor.now, *parties, question.purpose, decision, True, protected)
        if record_if is not None and not record_if(decision):
            return dataclasses.replace(answer, recorded=False)
        await record_share(
            connection,
            actor,
            child,
            to_org=question.to_organisation,
            purpose=question.purpose,
            decided=(decision_id, decision, entry),
            dry_run=dry_run,
        )
    return answer


async def decide_and_record(
    on: AsyncSession | Any,
    facts: SharingFacts,
    question: ShareQuestion,
    *,
    actor: Actor,
    child: Child,
    runtime: Runtime,
) -> tuple[uuid.UUID, Decision]:
    """One organisation's share decided on loaded facts (:func:`decide_on_facts`) and recorded with its
    audit entry in the caller's transaction (:func:`record_share`): each plan member's, each SIP invitee's.
    Each counts as a share attempt against the caller's rate limits: the caller sees what each got, so
    asking again and again would be a consent oracle."""
    decision_id = uuid.uuid4()
    decision, entry = decide_on_facts(
        facts,
        question,
        actor=actor,
        child=child,
        runtime=runtime,
        decision_id=decision_id,
        dry_run=False,
        limits=for_runtime(runtime),
    )
    decided = (decision_id, decision, entry)
    await record_share(on, actor, child, to_org=question.to_organisation, purpose=question.purpose, decided=decided)
    return decision_id, decision


async def record_share(
    on: AsyncSession | Any,
    actor: Actor,
    child: Child,
    *,
    to_org: str,
    purpose: str,
    decided: tuple[uuid.UUID, Decision, AuditRecord],
    dry_run: bool = False,
    mark_protected: bool = False,
) -> None:
    """Record a decision with its audit entry (``hub.db.lawful.record_decision``) as every share does:
    asked by the caller, from its organisation, with the decision's explanation kept; ``mark_protected``:
    the message marked the child's identity protected (kept, sticky)."""
    decision_id, decision, entry = decided
    await record_decision(
        on,
        decision_id=decision_id,
        decision=decision,
        requested_by=actor.principal.subject,
        from_org=actor.organisation_id,
        to_org=to_org,
        child=child.pseudonym,
        purpose=purpose,
        dry_run=dry_run,
        explanation=explanation(decision),
        audit=entry,
        mark_protected=mark_protected,
    )


def _check_codes(question: ShareQuestion, vocabulary: Vocabulary) -> None:
    errors = unknown_codes(vocabulary, "referral-kind", [question.purpose], "/purpose")
    errors += unknown_codes(vocabulary, "data-category", question.data_categories, "/data_categories")
    if question.legal_basis is not None:
        errors += unknown_codes(vocabulary, "legal-basis", [question.legal_basis], "/legal_basis")
    if errors:
        raise InvalidInput(
            f"{len(errors)} code(s) are not in the shared vocabulary.",
            errors=[
                dataclasses.replace(e, pointer=e.pointer.removesuffix("/0"))
                if e.pointer in ("/purpose/0", "/legal_basis/0")
                else e
                for e in errors
            ],
        )


def decide_on_facts(
    facts: SharingFacts,
    question: ShareQuestion,
    *,
    actor: Actor,
    child: Child,
    runtime: Runtime,
    decision_id: uuid.UUID,
    dry_run: bool,
    limits: SharingLimits | None = None,
) -> tuple[Decision, AuditRecord]:
    """The engine's answer on loaded facts, and the audit entry that records it (refusals too): the step
    between the reads and the write that :func:`decide_share` and a referral share, so both decide alike.
    ``question.personal_identity_number`` is not read: ``child`` is the child it names.

    With ``limits``, the attempt is counted first (``RateLimited`` when over: nothing is decided or
    written), and a refusal beyond a threshold is flagged in the audit entry (``details.flagged``).
    An allowed decision cites the statute of its basis in force on the Swedish day of ``actor.now`` (the
    time the hub sees), read from the runtime's ``legal-bases`` vocabulary."""
    sender = _registered(actor.organisation_id, facts.sender_type, None)
    recipient = _registered(question.to_organisation, facts.recipient_type, "/to_organisation")
    # Protected when this message marks it or the hub keeps a mark from an earlier one (the mark is sticky).
    protected = question.child_protected or facts.child_protected
    request = _share_request(question, sender, recipient, child, actor.now, protected=protected)
    if limits is not None:
        limits.admit(actor.organisation_id, child.pseudonym)
    policy = runtime.policy
    decision = decide(
        request,
        consents=_as_current(facts.consents, child),
        assessments=_as_current(facts.assessments, child),
        policy=policy,
        refusals=_as_current(facts.refusals, child),
    )
    if decision.allowed and decision.legal_basis is not None:
        day = swedish_day(actor.now)
        bases = legal_bases(runtime.vocabulary)
        decision = cited(decision, cite(bases, decision.legal_basis, day, policy.in_force(day)))
    details = _details(
        decision, dry_run=dry_run, legal_basis=question.legal_basis, basis_reference=question.basis_reference
    )
    if limits is not None and not decision.allowed:
        flagged = limits.refused(actor.organisation_id, child.pseudonym)
        if flagged:
            details["flagged"] = flagged
    entry = audit_record(
        actor,
        AuditAction.SHARING_DECISION,
        outcome=AuditOutcome.SUCCESS if decision.allowed else AuditOutcome.REFUSED,
        child_pseudonym=child.pseudonym,
        legal_basis=decision.legal_basis,
        decision_id=str(decision_id),
        counterpart_organisation=question.to_organisation,
        entity_type="SharingDecision",
        entity_id=str(decision_id),
        purpose=question.purpose,
        details=details,
    )
    return decision, entry


def _share_request(
    question: ShareQuestion, sender: Party, recipient: Party, child: Child, at: datetime, *, protected: bool
) -> ShareRequest:
    """The engine's question; a basis reference without a basis that has references is the caller's error."""
    try:
        return ShareRequest(
            from_party=sender,
            to_party=recipient,
            child_pseudonym=child.pseudonym,
            child_age=child.age,
            purpose=question.purpose,
            requested_categories=frozenset(question.data_categories),
            at=at,
            legal_basis=question.legal_basis,
            basis_reference=question.basis_reference,
            child_identity_protected=protected,
        )
    except ValueError as exc:
        raise InvalidInput(
            "The legal basis reference needs a legal basis that has references.",
            errors=[FieldError("/basis_reference", str(exc).splitlines()[-1])],
        ) from None


def _details(
    decision: Decision, *, dry_run: bool, legal_basis: str | None, basis_reference: str | None
) -> dict[str, object]:
    """What the decision's audit entry records of it."""
    return {
        "dry_run": dry_run,
        "permitted": list(decision.permitted_categories),
        "denied": list(decision.denied_categories),
        "reasons": [r.code for r in decision.reasons],
        "basis": cited_basis(decision),
        "requested_basis": {"legal_basis": legal_basis, "basis_reference": _as_reference(basis_reference)},
    }


def cited_basis(decision: Decision) -> dict[str, object] | None:
    """What the audit entry cites as the decision's basis (``None`` when refused). Only what the sender may
    see: a consent of another organisation is cited without its id. A necessity assessment is cited by id
    alone, as its decision maker (person and role) and case reference are sealed free texts."""
    basis = decision.legal_basis
    if not decision.allowed or basis is None:
        return None
    cited: dict[str, object] = {"legal_basis": basis}
    if decision.citation is not None:  # the statute in force that day, as cited then
        cited["statute"] = decision.citation.as_json()
    if basis == "consent":
        if not decision.basis_visible:
            return {**cited, "consent_id": None, "consent_of_another_organisation": True}
        return {**cited, "consent_id": decision.basis_reference}
    if basis == "necessary-disclosure":
        return {**cited, "necessity_assessment_id": decision.basis_reference}
    return cited  # report of concern: a duty of the law, no record to cite


def _as_reference(reference: str | None) -> str | None:
    # The reference a caller asked for, as the chain will keep it forever: an id (consents and assessments
    # have UUIDs), never a free text that might hold personal data.
    if reference is None:
        return None
    try:
        return str(uuid.UUID(reference))
    except ValueError:
        return "[not-an-id]"


def _as_current(records: list[_Fact], child: Child) -> list[_Fact]:
    # Records made under an older pseudonym key are matched through the candidates and presented to the
    # engine under the current pseudonym, so a key rotation never hides a consent.
    return [
        r if r.child_pseudonym == child.pseudonym else r.model_copy(update={"child_pseudonym": child.pseudonym})
        for r in records
    ]


@dataclass(frozen=True)
class AssessmentDraft:
    personal_identity_number: str
    recipient_organisation: str
    decided_by_person: str
    decided_by_role: str
    justification: str
    case_reference: str
    data_categories: list[str]
    decided_at: datetime | None = None


async def record_assessment(*, actor: Actor, draft: AssessmentDraft, runtime: Runtime) -> NecessityAssessment:
    """Record a named necessity assessment (OSL 10 kap. 2 §) made by the caller's organisation, with its
    audit entry, one commit; its free texts are stored encrypted with the runtime's cipher."""
    child = identify_child(
        draft.personal_identity_number,
        pseudonymizer=runtime.pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    errors = unknown_codes(runtime.vocabulary, "data-category", draft.data_categories, "/data_categories")
    if errors:
        raise InvalidInput("Unknown data categories.", errors=errors)
    hsa_problem = professional_reference_problem(draft.decided_by_person)
    if hsa_problem is not None:
        error = FieldError("/decided_by_person", hsa_problem.message, f"hsa-id-{hsa_problem.reason}")
        raise InvalidInput("The deciding professional's HSA-id is not valid.", errors=[error])
    decided_at = draft.decided_at or actor.now
    if decided_at > actor.now:
        raise InvalidInput(
            "An assessment cannot be dated in the future.",
            errors=[FieldError("/decided_at", "must not be in the future")],
        )
    async with UnitOfWork.of(runtime.sessions) as uow:
        await _party(uow.session, actor.organisation_id, None)
        recipient = await _party(uow.session, draft.recipient_organisation, "/recipient_organisation")
        assessment = _assessment(actor, draft, child.pseudonym, recipient.organisation_id, decided_at)
        await AssessmentRepository(uow.session, runtime.cipher).add(assessment, created_by=actor.principal.subject)
        await audit(
            uow.session,
            actor,
            AuditAction.NECESSITY_ASSESSMENT_RECORDED,
            child_pseudonym=child.pseudonym,
            legal_basis="necessary-disclosure",
            counterpart_organisation=recipient.organisation_id,
            entity_type="NecessityAssessment",
            entity_id=assessment.id,
            details={"categories": sorted(assessment.data_categories)},
        )
        await uow.commit()
    return assessment


def _assessment(
    actor: Actor, draft: AssessmentDraft, pseudonym: str, recipient: str, decided_at: datetime
) -> NecessityAssessment:
    return NecessityAssessment(
        id=str(uuid.uuid4()),
        child_pseudonym=pseudonym,
        organisation_id=actor.organisation_id,
        recipient_organisation_id=recipient,
        decided_by=DecisionMaker(person=draft.decided_by_person, role=draft.decided_by_role),
        justification=draft.justification,
        case_reference=draft.case_reference,
        data_categories=frozenset(draft.data_categories),
        decided_at=decided_at,
    )
