"""The report-of-concern loop: social services answer a report of concern, the answer goes back to the
reporter and nowhere else, and a report left unanswered past its deadline is overdue. Plain Python, no I/O.

A report of concern (orosanmälan) is a referral of the policy's report-of-concern kind
(``Policy.report_of_concern_purpose``). Its answer is not a status: the referral's lifecycle goes on as any
referral's, and the answer is a record of its own on the referral, given once by the receiver
(:meth:`ConcernReport.answer`), one code of the ``concern-answers`` vocabulary and nothing more, so no free
text travels back. What the answer records is the ``concern-answer`` data category: the hub tells it to the
reporter itself (a status event of type ``concern-answer``) and the decision engine never lets it travel
onward, whatever basis is offered (:data:`NEVER_ONWARD`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.domain.errors import Conflict, FieldError, InvalidInput, NotPermitted
from hub.domain.referrals import Decided, EventToRecord

# The data category of the answer and the type of the event that carries it to the reporter.
CONCERN_ANSWER = "concern-answer"
NEVER_ONWARD = frozenset({CONCERN_ANSWER})
"""Data categories no decision ever permits: the hub alone carries them, to the one party entitled."""

# A report withdrawn or made in error is not answered (there is no report to answer).
UNANSWERABLE = frozenset({"cancelled", "entered-in-error"})


@dataclass(frozen=True)
class Answer:
    """A recorded answer: its ``concern-answers`` code and when it was given."""

    code: str
    at: datetime


@dataclass(frozen=True)
class Answered:
    """What answering decided: the answer to record and the referral's event (the reporter told)."""

    answer: Answer
    decided: Decided


@dataclass(frozen=True)
class Deadline:
    """When an answer is due: ``days`` after the report reached social services (its delivery)."""

    days: int

    def due(self, delivered_at: datetime | None) -> datetime | None:
        return None if delivered_at is None else delivered_at + timedelta(days=self.days)


@dataclass(frozen=True)
class ConcernState:
    """What a party sees of a report's answer: the answer (None: none yet), when it is or was due, and
    whether it is overdue now (due and unanswered)."""

    answer: str | None
    answered_at: datetime | None
    due_at: datetime | None
    overdue: bool


@dataclass(frozen=True)
class ConcernReport:
    """A report of concern as a write model: the referral's reporter (its sender) and status, its kind, and
    any answer already given. Answering changes no status: the referral's lifecycle is its own."""

    sender: str
    status: str
    kind: str
    report_kind: str  # the policy's report-of-concern kind
    answered: Answer | None
    delivered_at: datetime | None

    @property
    def is_report(self) -> bool:
        return self.kind == self.report_kind

    def answer(self, code: str, *, side: str, codes: Collection[str], at: datetime) -> Answered:
        """Social services (the receiver) answer the report once, with one of ``codes``; the reporter (the
        sender) is told through its own system. Raises why not: not a report of concern (409), not the
        receiver (403), an unknown code (422), withdrawn or already answered (409)."""
        if not self.is_report:
            raise Conflict("Only a report of concern is answered; this referral is of another kind.")
        if side != "receiver":
            raise NotPermitted("Only social services that received the report answer it.")
        if code not in codes:
            raise InvalidInput(
                "Unknown answer.", errors=[FieldError("/answer", "not a concern-answers code", "unknown-code")]
            )
        if self.status in UNANSWERABLE:
            raise Conflict(f"The report is {self.status}; it is not answered.")
        if self.answered is not None:
            raise Conflict("The report has been answered; an answer is given once.")
        status = self.status
        event = EventToRecord(CONCERN_ANSWER, status, status, "receiver", self.sender, reason_code=code)
        return Answered(Answer(code, at), Decided(status, event))

    def state(self, deadline: Deadline, now: datetime) -> ConcernState | None:
        """The answer as a party sees it now; None for a referral that is not a report of concern."""
        if not self.is_report:
            return None
        due = deadline.due(self.delivered_at)
        if self.answered is not None:
            return ConcernState(self.answered.code, self.answered.at, due, False)
        live = self.status not in UNANSWERABLE
        return ConcernState(None, None, due, live and due is not None and now > due)
