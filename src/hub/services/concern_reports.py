"""The report-of-concern loop as use cases: social services answer a report (the reporter told through its
own system, the answer never travelling onward), each party sees the answer and whether it is overdue, and
the receiving social services search reports about a child within their own municipality. The domain
(``hub.domain.concern``) decides; this persists and audits. See docs/lawful-sharing.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.db import concerns as db
from hub.db import referrals as refdb
from hub.db.uow import UnitOfWork
from hub.domain.audit import AuditAction
from hub.domain.concern import CONCERN_ANSWER, ConcernState
from hub.runtime import Runtime
from hub.services.auditing import audit
from hub.services.children import identify_child
from hub.services.concern_states import ConcernClock, clock, report_of, state_of
from hub.services.context import Actor
from hub.services.referrals.read import visible_referral
from hub.services.referrals.transitions import persist

ANSWERS = "concern-answers"
SEARCH_LIMIT = 100  # a child has few reports; a page is plenty


async def answer_report(*, actor: Actor, referral_id: str, answer: str, runtime: Runtime) -> ConcernState:
    """Social services answer a report of concern they received: the answer and its event are stored, the
    reporter's system is told (a status event of type ``concern-answer``), audited; one commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        row, side = await visible_referral(uow.session, referral_id, actor.organisation_id, lock=True)
        given = (await db.answers(uow.session, [row.id])).get(row.id)
        answered = report_of(row, given, runtime.policy).answer(
            answer, side=side, codes=runtime.vocabulary.codes(ANSWERS), at=actor.now
        )
        event = await persist(uow.session, row, answered.decided, actor=actor, cipher=runtime.cipher)
        stored = db.AnswerRow(row.id, answer, actor.now, actor.organisation_id, event.id)
        await db.insert_answer(uow.session, stored)
        await audit(
            uow.session,
            actor,
            AuditAction.CONCERN_ANSWERED,
            child_pseudonym=row.child_pseudonym,
            legal_basis=row.legal_basis,
            decision_id=str(row.decision_id),
            counterpart_organisation=row.sender_organisation,
            entity_type="Referral",
            entity_id=str(row.id),
            purpose=row.kind,
            details={"answer": answer, "category": CONCERN_ANSWER},
        )
        await uow.commit()
    state = state_of(row, stored, clock(runtime, actor.now))
    assert state is not None
    return state


@dataclass(frozen=True)
class ReportFound:
    """A report of concern the searching social services may know of: metadata and its answer, no content."""

    id: str
    status: str
    sender_organisation: str
    recipient_organisation: str
    created_at: datetime
    delivered_at: datetime | None
    concern: ConcernState


async def search_reports(*, actor: Actor, pin: str, pointer: str, runtime: Runtime) -> list[ReportFound]:
    """Reports of concern about the child received by social services of the caller's own municipality, for
    a caller that is itself social services of a type that receives them (the policy's); everyone else
    finds nothing, exactly as when there is nothing (a search by child, audited with its basis)."""
    child = identify_child(pin, pseudonymizer=runtime.pseudonymizer, today=actor.today, pointer=pointer)
    policy = runtime.policy.in_force(actor.today)
    async with UnitOfWork.of(runtime.sessions) as uow:
        org_type, municipality = await db.municipality_of(uow.session, actor.organisation_id)
        entitled = org_type in policy.report_of_concern_recipient_types and municipality is not None
        rows = []
        if entitled and municipality is not None:
            rows = await db.reports_in_municipality(
                uow.session,
                pseudonyms=child.candidates,
                kind=policy.report_of_concern_purpose,
                municipality=municipality,
                limit=SEARCH_LIMIT,
            )
        at = clock(runtime, actor.now)
        answers = await db.answers(uow.session, [r.id for r in rows])
        found = [_found(r, answers.get(r.id), at) for r in rows]
        await audit(
            uow.session,
            actor,
            AuditAction.CONCERN_REPORTS_SEARCHED,
            child_pseudonym=child.pseudonym,
            legal_basis="report-of-concern" if entitled else None,
            entity_type="Referral",
            purpose=policy.report_of_concern_purpose,
            details={"count": len(found), "scope": "municipality" if entitled else "none"},
        )
        await uow.commit()
    return found


def _found(row: refdb.ReferralRow, answer: db.AnswerRow | None, at: ConcernClock) -> ReportFound:
    state = state_of(row, answer, at)
    assert state is not None  # every row is of the report-of-concern kind
    return ReportFound(
        str(row.id),
        row.status,
        row.sender_organisation,
        row.recipient_organisation,
        row.created_at,
        row.delivered_at,
        state,
    )
