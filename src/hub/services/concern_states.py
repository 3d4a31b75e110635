"""A report of concern's answer as each party sees it: answered or not, when due, overdue now. Read beside
the referral (``hub.services.referrals.read``) and by the search (``hub.services.concern_reports``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import concerns as db
from hub.db import referrals as refdb
from hub.domain.concern import Answer, ConcernReport, ConcernState, Deadline
from hub.domain.policy import Policy, swedish_day
from hub.runtime import Runtime


@dataclass(frozen=True)
class ConcernClock:
    """What a report's answer is judged against: the policy (its kind and deadline) and the time now."""

    policy: Policy
    now: datetime

    def deadline(self, delivered_at: datetime | None) -> Deadline:
        """The deadline in force on the day the report reached social services (a county's dated rule
        applies to reports from its day on)."""
        return Deadline(self.policy.in_force(swedish_day(delivered_at or self.now)).concern_answer_days)


def clock(runtime: Runtime, now: datetime | None = None) -> ConcernClock:
    return ConcernClock(runtime.policy, now or runtime.clock())


def report_of(row: refdb.ReferralRow, answer: db.AnswerRow | None, policy: Policy) -> ConcernReport:
    return ConcernReport(
        sender=row.sender_organisation,
        status=row.status,
        kind=row.kind,
        report_kind=policy.report_of_concern_purpose,
        answered=None if answer is None else Answer(answer.answer, answer.answered_at),
        delivered_at=row.delivered_at,
    )


def state_of(row: refdb.ReferralRow, answer: db.AnswerRow | None, at: ConcernClock) -> ConcernState | None:
    """What a party sees of a report's answer now (None: not a report of concern)."""
    return report_of(row, answer, at.policy).state(at.deadline(row.delivered_at), at.now)


async def states(session: AsyncSession, rows: Sequence[refdb.ReferralRow], at: ConcernClock) -> dict[str, ConcernState]:
    """The answer state of each report of concern among ``rows``, by referral id."""
    reports = [r for r in rows if r.kind == at.policy.report_of_concern_purpose]
    found = await db.answers(session, [r.id for r in reports])
    return {str(r.id): s for r in reports if (s := state_of(r, found.get(r.id), at)) is not None}
