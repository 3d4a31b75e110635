"""Referrals as use cases: send one (decided, stored and queued in one transaction), move it through its
lifecycle, read and list it. Delivery itself is ``hub.services.delivery``."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import referrals as db
from hub.db.lawful import SharingFacts, record_decision, sharing_facts
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction, AuditRecord
from hub.domain.errors import Conflict, FieldError, InvalidInput, NotFound, SharingDenied
from hub.domain.errors import Explanation as DomainExplanation
from hub.domain.identity import parse_personal_identity_number
from hub.domain.referrals import CONCERN_TEXT, Change, Decided, Lifecycle, Referral, Rule, Side
from hub.domain.sharing import Decision
from hub.domain.vocabulary import CodeSystemBase, ReferralStatusesDoc, UnknownCode, Vocabulary
from hub.runtime import Runtime
from hub.services import rate_limits, registry
from hub.services.auditing import audit, audit_record
from hub.services.children import Child, identify_child
from hub.services.codes import SYSTEMS, unknown_codes
from hub.services.context import Actor

# decide_share's own steps, shared so that a referral decides exactly as POST /v1/sharing-decisions does.
from hub.services.sharing import _explanation, decide_on_facts

WHEEL = "wellbeing-wheel"


def lifecycle(vocabulary: Vocabulary) -> Lifecycle:
    """The referral lifecycle of the vocabulary's transition table (built once per vocabulary)."""
    return _derived(vocabulary).lifecycle


class _Derived:
    """What referrals read from a vocabulary on every request, computed once per vocabulary: a loaded
    vocabulary never changes, and building code sets and concept lists anew cost a request a fifth of a
    millisecond."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self._vocabulary = weakref.ref(vocabulary)
        self._codes: dict[str, frozenset[str]] = {}
        self._translations: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {}

    @property
    def vocabulary(self) -> Vocabulary:
        vocabulary = self._vocabulary()
        assert vocabulary is not None
        return vocabulary

    @functools.cached_property
    def lifecycle(self) -> Lifecycle:
        doc = self.vocabulary.get("referral-statuses")
        assert isinstance(doc, ReferralStatusesDoc)
        rules = {
            (t.from_, t.to): Rule(t.actor, t.reason_required, t.feedback_required)
            for t in self.vocabulary.referral_transitions()
        }
        return Lifecycle(rules, terminal=[c.code for c in doc.concept if getattr(c, "terminal", False)])

    @functools.cached_property
    def wheel(self) -> tuple[str, dict[str, str]]:
        """The canonical wheel's URL and the Swedish display of each of its codes."""
        doc = self.vocabulary.get(WHEEL)
        assert isinstance(doc, CodeSystemBase)
        return doc.url, {c.code: c.display.get("sv") for c in doc.concepts()}

    def known(self, system: str) -> frozenset[str]:
        if system not in self._codes:
            self._codes[system] = self.vocabulary.codes(SYSTEMS[system])
        return self._codes[system]

    def unknown_codes(self, system: str, codes: list[str], pointer: str) -> list[FieldError]:
        """As ``hub.services.codes.unknown_codes``; the code set looked up once."""
        known = self.known(system)
        if all(code in known for code in codes):
            return []
        return unknown_codes(self.vocabulary, system, codes, pointer)

    def translate(self, system: str, codes: list[str]) -> tuple[str, tuple[str, ...]]:
        """``Vocabulary.translate`` forward: the source system's URL and every match's code, in order
        (raising as it does). Only successful translations are kept, at most a few thousand."""
        key = (system, tuple(codes))
        found = self._translations.get(key)
        if found is None:
            translation = self.vocabulary.translate(system=system, codes=codes)
            found = (translation.source, tuple(m.code for r in translation.results for m in r.matches))
            if len(self._translations) >= 4096:
                self._translations.clear()
            self._translations[key] = found
        return found


_DERIVED: weakref.WeakKeyDictionary[Vocabulary, _Derived] = weakref.WeakKeyDictionary()


def _derived(vocabulary: Vocabulary) -> _Derived:
    derived = _DERIVED.get(vocabulary)
    if derived is None:
        derived = _DERIVED[vocabulary] = _Derived(vocabulary)
    return derived


# --- sending -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    organisation_id: str | None = None
    service_id: str | None = None
    organisation_type: str | None = None
    municipality_code: str | None = None


@dataclass(frozen=True)
class LocalCodes:
    system: str  # a wheel variant, e.g. variant-behovskompassen
    codes: list[str]


@dataclass(frozen=True)
class ReferralDraft:
    kind: str
    target: Target
    personal_identity_number: str
    data_categories: list[str]
    dimensions: list[str] = field(default_factory=list)
    local_codes: LocalCodes | None = None
    trappan_step: int | None = None
    concern_text: str | None = None
    information: dict[str, Any] = field(default_factory=dict)
    legal_basis: str | None = None
    basis_reference: str | None = None


@dataclass(frozen=True)
class Sent:
    referral: db.ReferralRow
    replayed: bool  # the same Idempotency-Key and body were seen before: this is that referral


def _request_hash(draft: ReferralDraft, child_pseudonym: str) -> str:
    # The number itself is left out (it is matched through its pseudonym), so the hash cannot be tested
    # against guessed numbers.
    body = {**json.loads(json.dumps(draft, default=lambda o: o.__dict__)), "personal_identity_number": None}
    body["child"] = child_pseudonym
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _validate(draft: ReferralDraft, vocabulary: Vocabulary) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Every code against the vocabulary, and what the referral carries against what it declares.
    Returns the concern's canonical dimensions and local codes (translated through the crosswalk)."""
    derived = _derived(vocabulary)
    errors = derived.unknown_codes("referral-kind", [draft.kind], "/kind")
    errors += derived.unknown_codes("data-category", draft.data_categories, "/data_categories")
    errors += derived.unknown_codes("wellbeing-indicator", draft.dimensions, "/concern/dimensions")
    declared = set(draft.data_categories)
    errors += [
        FieldError(f"/information/{key}", f"{key!r} is not among the referral's data_categories", "undeclared-category")
        for key in draft.information
        if key not in declared
    ]
    if draft.concern_text and CONCERN_TEXT not in declared:
        errors.append(
            FieldError("/concern/text", "free text needs the data category concern-text", "undeclared-category")
        )
    canonical = list(dict.fromkeys(draft.dimensions))
    local: list[dict[str, str]] = []
    if draft.local_codes is not None:
        try:
            source, matches = derived.translate(draft.local_codes.system, draft.local_codes.codes)
        except UnknownCode as exc:
            errors.append(FieldError(f"/concern/local_codes{exc.field}", str(exc), "unknown-code"))
        except KeyError:
            errors.append(
                FieldError("/concern/local_codes/system", "not a wheel variant of the vocabulary", "unknown-code")
            )
        else:
            local = [{"system": source, "code": c} for c in draft.local_codes.codes]
            canonical += [code for code in matches if code not in canonical]
    if errors:
        raise InvalidInput(f"{len(errors)} field(s) of the referral are not valid.", errors=_scalar(errors))
    wheel_url, display = derived.wheel
    return [{"system": wheel_url, "code": c, "display": display.get(c, c)} for c in canonical], local


def _scalar(errors: list[FieldError]) -> list[FieldError]:
    return [FieldError("/kind", e.message, e.code) if e.pointer == "/kind/0" else e for e in errors]


async def send_referral(*, actor: Actor, draft: ReferralDraft, idempotency_key: str, runtime: Runtime) -> Sent:
    """The send use case in its unit of work (see ``_send``)."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        return await _send(uow, actor=actor, draft=draft, idempotency_key=idempotency_key, runtime=runtime)


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
    request_hash = _request_hash(draft, child.pseudonym)
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
                return _replay(existing, request_hash)
            dimensions, local_codes = _validate(draft, runtime.vocabulary)
            if facts.recipient_type is not None:
                return await _decide_and_store(
                    connection,
                    actor=actor,
                    draft=draft,
                    child=child,
                    request_hash=request_hash,
                    idempotency_key=idempotency_key,
                    recipient=t.organisation_id,
                    service_id=None,
                    facts=facts,
                    checked=(dimensions, local_codes),
                    runtime=runtime,
                )
        # Not in the registry: the general path below answers as resolve_target does.
    existing = await db.referral_by_key(uow.session, actor.organisation_id, idempotency_key)
    if existing is not None:
        return _replay(existing, request_hash)
    dimensions, local_codes = _validate(draft, runtime.vocabulary)
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
            connection,
            actor=actor,
            draft=draft,
            child=child,
            request_hash=request_hash,
            idempotency_key=idempotency_key,
            recipient=recipient,
            service_id=service_id,
            facts=facts,
            checked=(dimensions, local_codes),
            runtime=runtime,
        )


async def _decide_and_store(
    connection: Any,
    *,
    actor: Actor,
    draft: ReferralDraft,
    child: Child,
    request_hash: str,
    idempotency_key: str,
    recipient: str,
    service_id: str | None,
    facts: SharingFacts,
    checked: tuple[list[dict[str, str]], list[dict[str, str]]],
    runtime: Runtime,
) -> Sent:
    """The sharing decision as ``hub.services.sharing.decide_share`` makes it, and then the referral.
    A refusal is recorded with its audit entry (one statement, committed) and raised; an allowance is
    written together with everything the referral adds (``hub.db.referrals.store_sent``)."""
    decision_id = uuid.uuid4()
    decision, decision_entry = _decide(
        actor=actor,
        draft=draft,
        child=child,
        recipient=recipient,
        facts=facts,
        runtime=runtime,
        decision_id=decision_id,
    )
    if not decision.allowed:
        await record_decision(
            connection,
            decision_id=decision_id,
            decision=decision,
            requested_by=actor.principal.subject,
            from_org=actor.organisation_id,
            to_org=recipient,
            child=child.pseudonym,
            purpose=draft.kind,
            dry_run=False,
            explanation=_explanation(decision),
            audit=decision_entry,
        )
        raise SharingDenied(
            "No legal basis allows this referral; the reasons say why and the remedies what would make it lawful.",
            reasons=[DomainExplanation(r.code, r.sv, r.en) for r in decision.reasons],
            remedies=[DomainExplanation(r.code, r.sv, r.en) for r in decision.remedies],
            decision_id=str(decision_id),
        )
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
    payload, key_id = runtime.cipher.encrypt(document, bound_to=str(referral_id))
    row = db.ReferralRow(
        id=referral_id,
        sender_organisation=actor.organisation_id,
        recipient_organisation=recipient,
        service_id=service_id,
        kind=draft.kind,
        status="requested",
        cancellation_requested_at=None,
        delivered_at=None,
        child_pseudonym=child.pseudonym,
        dimensions=[d["code"] for d in dimensions],
        trappan_step=draft.trappan_step,
        data_categories=sorted(set(draft.data_categories)),
        permitted_categories=list(decision.permitted_categories),
        legal_basis=str(decision.legal_basis),
        basis_reference=decision.basis_reference,
        decision_id=decision_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        payload=payload,
        payload_key_id=key_id,
        payload_purged_at=None,
        created_at=actor.now,
        updated_at=actor.now,
    )
    # The first event (what _record_event writes for "requested"; the first of a new referral is seq 1).
    event = db.EventRow(
        id=uuid.uuid4(),
        referral_id=referral_id,
        seq=1,
        type="status",
        from_status=None,
        to_status="requested",
        by_organisation=actor.organisation_id,
        by_subject=actor.principal.subject,
        reason_code=None,
        suggested_organisation=None,
        suggested_service=None,
        details=None,
        details_key_id=None,
        idempotency_key=None,
        occurred_at=actor.now,
    )
    outbox = db.OutboxRow(
        id=uuid.uuid4(),
        referral_id=referral_id,
        event_id=None,
        kind="referral",
        recipient_organisation=recipient,
        idempotency_key=f"{actor.organisation_id}:{idempotency_key}",
        state="queued",
        attempts=0,
        next_attempt_at=actor.now,
        lease_until=None,
        last_error=None,
        adapter=None,
        remote_id=None,
        delivered_at=None,
        created_at=actor.now,
        updated_at=actor.now,
    )
    sent_entry = audit_record(
        actor,
        AuditAction.REFERRAL_SENT,
        child_pseudonym=child.pseudonym,
        legal_basis=row.legal_basis,
        decision_id=str(decision_id),
        counterpart_organisation=recipient,
        entity_type="Referral",
        entity_id=str(referral_id),
        purpose=draft.kind,
        details={"permitted": row.permitted_categories, "denied": list(decision.denied_categories)},
    )
    stored = await db.store_sent(
        connection,
        decision=db.DecisionValues(
            id=decision_id,
            requested_by=actor.principal.subject,
            from_organisation=actor.organisation_id,
            to_organisation=recipient,
            child_pseudonym=child.pseudonym,
            purpose=draft.kind,
            legal_basis=decision.legal_basis,
            basis_reference=decision.basis_reference,
            permitted_categories=list(decision.permitted_categories),
            denied_categories=list(decision.denied_categories),
            explanation=json.dumps(_explanation(decision)),
        ),
        referral=row,
        event=event,
        outbox=outbox,
        entries=(decision_entry, sent_entry),
    )
    if not stored:
        # A concurrent request with the same key won the race (nothing of ours was written): its replay.
        existing = await db.referral_by_key_on(connection, actor.organisation_id, idempotency_key)
        if existing is None:
            raise RuntimeError("the Idempotency-Key was taken, yet no referral holds it")
        return _replay(existing, request_hash)
    return Sent(row, replayed=False)


def _decide(
    *,
    actor: Actor,
    draft: ReferralDraft,
    child: Child,
    recipient: str,
    facts: SharingFacts,
    runtime: Runtime,
    decision_id: uuid.UUID,
) -> tuple[Decision, AuditRecord]:
    """``decide_share``'s step between its reads and its write (``decide_on_facts``), after the code check
    it makes too, so that the referral's statement can write the decision. ``_validate`` has already
    checked the kind and the categories against the same vocabularies ``decide_share`` checks."""
    if draft.legal_basis is not None:
        errors = unknown_codes(runtime.vocabulary, "legal-basis", [draft.legal_basis], "/legal_basis")
        if errors:
            raise InvalidInput(
                f"{len(errors)} code(s) are not in the shared vocabulary.",
                errors=[dataclasses.replace(e, pointer=e.pointer.removesuffix("/0")) for e in errors],
            )
    return decide_on_facts(
        facts,
        actor=actor,
        child=child,
        to_organisation=recipient,
        purpose=draft.kind,
        data_categories=draft.data_categories,
        legal_basis=draft.legal_basis,
        basis_reference=draft.basis_reference,
        policy=runtime.policy,
        decision_id=decision_id,
        dry_run=False,
        limits=rate_limits.for_runtime(runtime),  # every referral attempt counts, as a dry run does
    )


def _replay(existing: db.ReferralRow, request_hash: str) -> Sent:
    if existing.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used for a different referral. Use a new key for a new referral."
        )
    return Sent(existing, replayed=True)


# --- lifecycle ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventDraft:
    type: str  # "status" | "cancellation-requested"
    status: str | None = None
    reason_code: str | None = None
    reason_text: str | None = None
    suggested_organisation: str | None = None
    suggested_service: str | None = None
    feedback: str | None = None


def side_of(row: db.ReferralRow, organisation_id: str) -> Side | None:
    if organisation_id == row.sender_organisation:
        return "sender"
    if organisation_id == row.recipient_organisation and row.delivered_at is not None:
        return "receiver"
    return None


async def visible_referral(
    session: AsyncSession, referral_id: str, organisation_id: str, *, lock: bool = False
) -> tuple[db.ReferralRow, Side]:
    """The referral if the organisation sent it or received it; otherwise 404 (its existence is not told)."""
    try:
        rid = uuid.UUID(referral_id)
    except ValueError:
        raise NotFound("No such referral.") from None
    row = await db.referral(session, rid, lock=lock)
    side = None if row is None else side_of(row, organisation_id)
    if row is None or side is None:
        raise NotFound("No such referral.")
    return row, side


def aggregate(row: db.ReferralRow, vocabulary: Vocabulary) -> Referral:
    """The stored referral as the domain's write model."""
    return Referral(
        sender=row.sender_organisation,
        recipient=row.recipient_organisation,
        status=row.status,
        delivered=row.delivered_at is not None,
        cancellation_requested=row.cancellation_requested_at is not None,
        lifecycle=lifecycle(vocabulary),
    )


async def record_event(
    *,
    actor: Actor,
    referral_id: str,
    draft: EventDraft,
    idempotency_key: str | None,
    runtime: Runtime,
) -> db.EventRow:
    """A party moves the referral (or asks for its cancellation): the domain decides, the stores persist,
    the audit records it, one commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        event = await _record_event(
            uow.session,
            actor=actor,
            referral_id=referral_id,
            draft=draft,
            idempotency_key=idempotency_key,
            runtime=runtime,
        )
        await uow.commit()
        return event


async def _record_event(
    session: AsyncSession,
    *,
    actor: Actor,
    referral_id: str,
    draft: EventDraft,
    idempotency_key: str | None,
    runtime: Runtime,
) -> db.EventRow:
    row, side = await visible_referral(session, referral_id, actor.organisation_id, lock=True)
    if idempotency_key:
        seen = await db.event_by_key(session, row.id, actor.organisation_id, idempotency_key)
        if seen is not None:
            return seen
    _check_codes(draft, runtime.vocabulary)
    referral = aggregate(row, runtime.vocabulary)
    if draft.type == "cancellation-requested":
        if side != "sender":
            raise InvalidInput(
                "Only the sender requests a cancellation.", errors=[FieldError("/type", "sender only", "wrong-party")]
            )
        decided = referral.request_cancellation(draft.reason_code, draft.reason_text)
    else:
        if draft.status is None:
            raise InvalidInput("A status event names the new status.", errors=[FieldError("/status", "required")])
        decided = referral.change(
            Change(draft.status, side, draft.reason_code, draft.reason_text, draft.feedback),
            suggested=(draft.suggested_organisation, draft.suggested_service),
        )
    event = await persist(session, row, decided, actor=actor, idempotency_key=idempotency_key, cipher=runtime.cipher)
    await audit(
        session,
        actor,
        AuditAction.REFERRAL_STATUS_CHANGED,
        child_pseudonym=row.child_pseudonym,
        legal_basis=row.legal_basis,
        decision_id=str(row.decision_id),
        counterpart_organisation=referral.counterpart(side),
        entity_type="Referral",
        entity_id=str(row.id),
        purpose=row.kind,
        details={"type": draft.type, "from": row.status, "to": event.to_status, "reason_code": draft.reason_code},
    )
    return event


def _check_codes(draft: EventDraft, vocabulary: Vocabulary) -> None:
    if draft.reason_code is not None and draft.status == "rejected":
        if draft.reason_code not in vocabulary.codes("rejection-reasons"):
            raise InvalidInput(
                "Unknown rejection reason.",
                errors=[FieldError("/reason_code", "not a rejection-reasons code", "unknown-code")],
            )


async def persist(
    session: AsyncSession,
    row: db.ReferralRow,
    decided: Decided,
    *,
    actor: Actor | None,
    idempotency_key: str | None = None,
    cipher: Any = None,
    now: datetime | None = None,
) -> db.EventRow:
    """Store what the domain decided (``Decided``): the referral's new state, its event and, when the
    event names a party to tell, its outbox entry (closed loop). The caller holds the row lock and commits."""
    at = now or (actor.now if actor else None)
    assert at is not None
    if decided.cancellation_requested:
        await db.update_referral(session, row.id, cancellation_requested_at=at, updated_at=at)
    elif decided.status != row.status:
        await db.update_referral(session, row.id, status=decided.status, updated_at=at)
    if decided.abandon_delivery:
        await db.abandon_pending(session, row.id, at, f"referral {decided.status} before delivery")
    spec = decided.event
    event_id = uuid.uuid4()
    texts = {k: v for k, v in (("reason_text", spec.reason_text), ("feedback", spec.feedback)) if v}
    details, details_key = (None, None)
    if texts and cipher is not None:
        details, details_key = cipher.encrypt(texts, bound_to=str(event_id))
    event = db.EventRow(
        id=event_id,
        referral_id=row.id,
        seq=await db.next_event_seq(session, row.id),
        type=spec.type,
        from_status=spec.from_status,
        to_status=spec.to_status,
        by_organisation=None if spec.side == "hub" or actor is None else actor.organisation_id,
        by_subject=None if actor is None else actor.principal.subject,
        reason_code=spec.reason_code,
        suggested_organisation=spec.suggested_organisation,
        suggested_service=spec.suggested_service,
        details=details,
        details_key_id=details_key,
        idempotency_key=idempotency_key,
        occurred_at=at,
    )
    await db.insert_event(session, event)
    if spec.notify is not None:
        await db.enqueue(session, db.status_event_entry(row.id, event_id, spec.notify, at))
    return event


async def hub_transition(
    session: AsyncSession,
    row: db.ReferralRow,
    decided: Decided,
    *,
    now: datetime,
    cipher: Any = None,
) -> db.EventRow:
    """Store a change the hub itself made (``Referral.hub_change``, ``receipt``, ``delivery_failed``): the
    domain has checked it against the lifecycle and names the sender to tell. The caller holds the
    referral row lock and commits."""
    return await persist(session, row, decided, actor=None, cipher=cipher, now=now)


# --- reading -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferralQuery:
    role: str | None = None
    statuses: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    counterpart: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    cursor: str | None = None
    limit: int = 50


@dataclass(frozen=True)
class ReferralListPage:
    items: list[tuple[db.ReferralRow, Side]]
    next_cursor: str | None


def _cursor(row: db.ReferralRow) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def _after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    try:
        at, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), uuid.UUID(rid)
    except ValueError:
        raise InvalidInput(
            "The cursor is not valid.", errors=[FieldError("cursor", "not a cursor from this API")]
        ) from None


async def list_referrals(session: AsyncSession, *, organisation_id: str, query: ReferralQuery) -> ReferralListPage:
    """What the organisation sent, and what it received once delivered; metadata only, newest first."""
    rows = await db.list_referrals(
        session,
        db.ReferralFilter(
            organisation=organisation_id,
            role=query.role,
            statuses=query.statuses,
            kinds=query.kinds,
            counterpart=query.counterpart,
            created_from=query.created_from,
            created_to=query.created_to,
            after=_after(query.cursor),
            limit=query.limit + 1,
        ),
    )
    page = rows[: query.limit]
    return ReferralListPage(
        items=[(r, side_of(r, organisation_id) or "sender") for r in page],
        next_cursor=_cursor(page[-1]) if len(rows) > query.limit else None,
    )


def event_texts(event: db.EventRow, cipher: Any) -> Mapping[str, str]:
    if event.details is None or event.details_key_id is None:
        return {}
    return cipher.decrypt(event.details, event.details_key_id, bound_to=str(event.id))  # type: ignore[no-any-return]


def document_for(row: db.ReferralRow, side: Side, cipher: Any) -> dict[str, Any] | None:
    """What the party may read: the sender its whole referral, the receiver what was permitted."""
    from hub.domain.referrals import strip_to

    if row.payload is None or row.payload_key_id is None:
        return None  # purged after the retention period
    document = cipher.decrypt(row.payload, row.payload_key_id, bound_to=str(row.id))
    return document if side == "sender" else strip_to(document, row.permitted_categories)


async def read_referral(
    *, actor: Actor, referral_id: str, runtime: Runtime
) -> tuple[db.ReferralRow, Side, list[db.EventRow], list[db.OutboxRow], dict[str, Any] | None]:
    """An audited read: the answer leaves only once its audit entry is committed."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        read = await _read(uow.session, actor=actor, referral_id=referral_id, runtime=runtime)
        await uow.commit()
        return read


async def _read(
    session: AsyncSession, *, actor: Actor, referral_id: str, runtime: Runtime
) -> tuple[db.ReferralRow, Side, list[db.EventRow], list[db.OutboxRow], dict[str, Any] | None]:
    row, side = await visible_referral(session, referral_id, actor.organisation_id)
    document = document_for(row, side, runtime.cipher)
    await audit(
        session,
        actor,
        AuditAction.REFERRAL_READ,
        child_pseudonym=row.child_pseudonym,
        legal_basis=row.legal_basis,
        decision_id=str(row.decision_id),
        counterpart_organisation=row.recipient_organisation if side == "sender" else row.sender_organisation,
        entity_type="Referral",
        entity_id=str(row.id),
        purpose=row.kind,
        details={
            "side": side,
            "categories": sorted(row.permitted_categories if side == "receiver" else row.data_categories),
        },
    )
    events = await db.events(session, row.id)
    deliveries = await db.outbox_entries(session, referral_id=row.id)
    return row, side, events, deliveries, document
