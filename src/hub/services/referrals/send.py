"""Sending a referral: decided, stored and queued in one statement that commits by itself."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

from hub.db import referrals as db
from hub.db.lawful import SharingFacts, sharing_facts
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction, AuditRecord
from hub.domain.errors import Conflict, InvalidInput, SharingDenied
from hub.domain.errors import Explanation as DomainExplanation
from hub.domain.identity import parse_personal_identity_number
from hub.domain.referrals import Referral
from hub.domain.sharing import Decision
from hub.runtime import Runtime
from hub.services import rate_limits, registry
from hub.services.auditing import audit_record
from hub.services.children import Child, identify_child
from hub.services.codes import unknown_codes
from hub.services.context import Actor
from hub.services.referrals.derived import lifecycle
from hub.services.referrals.draft import ReferralDraft, hash_request, validate_draft
from hub.services.referrals.transitions import event_row

# decide_share's own steps, shared so that a referral decides exactly as POST /v1/sharing-decisions does.
from hub.services.sharing import ShareQuestion, decide_on_facts, explanation, record_share


@dataclass(frozen=True)
class Sent:
    referral: db.ReferralRow
    replayed: bool  # the same Idempotency-Key and body were seen before: this is that referral


async def send_referral(*, actor: Actor, draft: ReferralDraft, idempotency_key: str, runtime: Runtime) -> Sent:
    """The send use case in its unit of work (see ``_send``)."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        return await _send(uow, actor=actor, draft=draft, idempotency_key=idempotency_key, runtime=runtime)


@dataclass(frozen=True)
class _Sending:
    """What every step of one send reads: who sends what, for which child, under which key."""

    actor: Actor
    draft: ReferralDraft
    child: Child
    idempotency_key: str
    request_hash: str  # of the draft and the child's pseudonym: a replay must carry the same
    runtime: Runtime


async def _send(uow: UnitOfWork, *, actor: Actor, draft: ReferralDraft, idempotency_key: str, runtime: Runtime) -> Sent:
    """Decide, then store the referral, its first event and its outbox entry in one transaction.
    A refusal is recorded and audited, then raised as ``SharingDenied`` with the engine's reasons.

    Two round trips when the target names an organisation: one read of the sharing facts and of the
    referral already holding the key (a replay?), and one statement that writes everything and commits
    (``hub.db.referrals.store_sent``)."""
    child = identify_child(
        draft.personal_identity_number,
        pseudonymizer=runtime.pseudonymizer,
        today=actor.today,
        pointer="/child/personal_identity_number",
    )
    sending = _Sending(actor, draft, child, idempotency_key, hash_request(draft, child.pseudonym), runtime)
    t = draft.target
    by_id = t.service_id is None and t.organisation_type is None and t.municipality_code is None
    if t.organisation_id is not None and by_id:
        # Statements that commit by themselves, on a connection of the pool's: no ORM session.
        async with uow.statement() as connection:
            facts, existing = await db.facts_and_key_on(
                connection,
                sender=actor.organisation_id,
                recipient=t.organisation_id,
                candidates=child.candidates,
                key=idempotency_key,
            )
            if existing is not None:
                return _replay(existing, sending.request_hash)
            checked = validate_draft(draft, runtime.vocabulary)
            if facts.recipient_type is not None:
                return await _decide_and_store(
                    connection, sending, recipient=t.organisation_id, service_id=None, facts=facts, checked=checked
                )
        # Not in the registry: the general path below answers as resolve_target does.
    existing = await db.referral_by_key(uow.session, actor.organisation_id, idempotency_key)
    if existing is not None:
        return _replay(existing, sending.request_hash)
    checked = validate_draft(draft, runtime.vocabulary)
    resolved = await registry.resolve_target(
        uow.session,
        organisation_id=t.organisation_id,
        service_id=t.service_id,
        organisation_type=t.organisation_type,
        municipality_code=t.municipality_code,
        referral_kind=draft.kind,
    )
    recipient = resolved.organisation.id
    service_id = None if resolved.service is None else resolved.service.id
    await uow.end_reads()  # what follows is one statement that commits by itself: the use case's commit
    async with uow.statement() as connection:
        facts = await sharing_facts(
            connection, sender=actor.organisation_id, recipient=recipient, candidates=child.candidates
        )
        return await _decide_and_store(
            connection, sending, recipient=recipient, service_id=service_id, facts=facts, checked=checked
        )


_Checked = tuple[list[dict[str, str]], list[dict[str, str]]]  # validate_draft's dimensions and local codes


async def _decide_and_store(
    connection: Any, s: _Sending, *, recipient: str, service_id: str | None, facts: SharingFacts, checked: _Checked
) -> Sent:
    """The sharing decision as ``hub.services.sharing.decide_share`` makes it, and then the referral.
    A refusal is recorded with its audit entry (one statement, committed) and raised; an allowance is
    written together with everything the referral adds (``hub.db.referrals.store_sent``)."""
    decision_id = uuid.uuid4()
    decision, decision_entry = _decide(s, recipient=recipient, facts=facts, decision_id=decision_id)
    if not decision.allowed:
        await _refuse(connection, s, recipient=recipient, decided=(decision, decision_entry), decision_id=decision_id)
    row, event, outbox = _rows(
        s, recipient=recipient, service_id=service_id, decision_id=decision_id, decision=decision, checked=checked
    )
    sent_entry = audit_record(
        s.actor,
        AuditAction.REFERRAL_SENT,
        child_pseudonym=s.child.pseudonym,
        legal_basis=row.legal_basis,
        decision_id=str(decision_id),
        counterpart_organisation=recipient,
        entity_type="Referral",
        entity_id=str(row.id),
        purpose=s.draft.kind,
        details={"permitted": row.permitted_categories, "denied": list(decision.denied_categories)},
    )
    stored = await db.store_sent(
        connection,
        decision=_decision_values(s, recipient=recipient, decision=decision, decision_id=decision_id),
        referral=row,
        event=event,
        outbox=outbox,
        entries=(decision_entry, sent_entry),
        mark_protected=s.draft.protected_identity,
    )
    if not stored:
        # A concurrent request with the same key won the race (nothing of ours was written): its replay.
        existing = await db.referral_by_key_on(connection, s.actor.organisation_id, s.idempotency_key)
        if existing is None:
            raise RuntimeError("the Idempotency-Key was taken, yet no referral holds it")
        return _replay(existing, s.request_hash)
    return Sent(row, replayed=False)


def _decision_values(s: _Sending, *, recipient: str, decision: Decision, decision_id: uuid.UUID) -> db.DecisionValues:
    """The allowed decision's row, written in the referral's statement."""
    return db.DecisionValues(
        id=decision_id,
        requested_by=s.actor.principal.subject,
        from_organisation=s.actor.organisation_id,
        to_organisation=recipient,
        child_pseudonym=s.child.pseudonym,
        purpose=s.draft.kind,
        legal_basis=decision.legal_basis,
        basis_reference=decision.basis_reference,
        permitted_categories=list(decision.permitted_categories),
        denied_categories=list(decision.denied_categories),
        explanation=json.dumps(explanation(decision)),
    )


async def _refuse(
    connection: Any, s: _Sending, *, recipient: str, decided: tuple[Decision, AuditRecord], decision_id: uuid.UUID
) -> NoReturn:
    """A refusal: recorded with its audit entry (one statement, committed), then raised with the reasons."""
    decision, decision_entry = decided
    await record_share(
        connection,
        s.actor,
        s.child,
        to_org=recipient,
        purpose=s.draft.kind,
        decided=(decision_id, decision, decision_entry),
        mark_protected=s.draft.protected_identity,  # a refused message still tells the hub of the protection
    )
    raise SharingDenied(
        "No legal basis allows this referral; the reasons say why and the remedies what would make it lawful.",
        reasons=[DomainExplanation(r.code, r.sv, r.en) for r in decision.reasons],
        remedies=[DomainExplanation(r.code, r.sv, r.en) for r in decision.remedies],
        decision_id=str(decision_id),
    )


def _rows(
    s: _Sending,
    *,
    recipient: str,
    service_id: str | None,
    decision_id: uuid.UUID,
    decision: Decision,
    checked: _Checked,
) -> tuple[db.ReferralRow, db.EventRow, db.OutboxRow]:
    """An allowed referral as stored: its row (the document encrypted), its first event as the domain
    opens it (``Referral.send``) and its outbox entry. Long only because it names every column of the
    three rows."""
    actor, draft = s.actor, s.draft
    opened = Referral.send(lifecycle(s.runtime.vocabulary))
    dimensions, local_codes = checked
    pin = parse_personal_identity_number(draft.personal_identity_number, today=actor.today)
    referral_id = uuid.uuid4()
    document = {
        "child": {"personal_identity_number": pin.canonical, "birth_date": pin.birth_date.isoformat()},
        "concern": {
            "dimensions": dimensions,
            "local_codes": local_codes,
            "trappan_step": draft.trappan_step,
            "text": draft.concern_text,
        },
        "information": draft.information,
    }
    payload, key_id = s.runtime.cipher.encrypt(document, bound_to=str(referral_id))
    row = db.ReferralRow(
        id=referral_id,
        sender_organisation=actor.organisation_id,
        recipient_organisation=recipient,
        service_id=service_id,
        kind=draft.kind,
        status=opened.status,
        cancellation_requested_at=None,
        delivered_at=None,
        child_pseudonym=s.child.pseudonym,
        dimensions=[d["code"] for d in dimensions],
        trappan_step=draft.trappan_step,
        data_categories=sorted(set(draft.data_categories)),
        permitted_categories=list(decision.permitted_categories),
        legal_basis=str(decision.legal_basis),
        basis_reference=decision.basis_reference,
        decision_id=decision_id,
        idempotency_key=s.idempotency_key,
        request_hash=s.request_hash,
        payload=payload,
        payload_key_id=key_id,
        payload_purged_at=None,
        created_at=actor.now,
        updated_at=actor.now,
    )
    # The first event, written as ``persist`` writes events (the first of a new referral is seq 1).
    event = event_row(opened.event, event_id=uuid.uuid4(), referral_id=referral_id, seq=1, actor=actor, at=actor.now)
    outbox = db.queued_entry(referral_id, recipient, f"{actor.organisation_id}:{s.idempotency_key}", actor.now)
    return row, event, outbox


def _decide(
    s: _Sending, *, recipient: str, facts: SharingFacts, decision_id: uuid.UUID
) -> tuple[Decision, AuditRecord]:
    """``decide_share``'s step between its reads and its write (``decide_on_facts``), after the code check
    it makes too, so that the referral's statement can write the decision. ``validate_draft`` has already
    checked the kind and the categories against the same vocabularies ``decide_share`` checks."""
    draft = s.draft
    if draft.legal_basis is not None:
        errors = unknown_codes(s.runtime.vocabulary, "legal-basis", [draft.legal_basis], "/legal_basis")
        if errors:
            raise InvalidInput(
                f"{len(errors)} code(s) are not in the shared vocabulary.",
                errors=[dataclasses.replace(e, pointer=e.pointer.removesuffix("/0")) for e in errors],
            )
    question = ShareQuestion(
        to_organisation=recipient,
        personal_identity_number=draft.personal_identity_number,
        purpose=draft.kind,
        data_categories=draft.data_categories,
        legal_basis=draft.legal_basis,
        basis_reference=draft.basis_reference,
        child_protected=draft.protected_identity,
    )
    return decide_on_facts(
        facts,
        question,
        actor=s.actor,
        child=s.child,
        runtime=s.runtime,
        decision_id=decision_id,
        dry_run=False,
        limits=rate_limits.for_runtime(s.runtime),  # every referral attempt counts, as a dry run does
    )


def _replay(existing: db.ReferralRow, request_hash: str) -> Sent:
    if existing.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used for a different referral. Use a new key for a new referral."
        )
    return Sent(existing, replayed=True)
