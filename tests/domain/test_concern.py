"""The report-of-concern write model, without a database: who answers, with what, how often, and when a
report is overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.domain.concern import CONCERN_ANSWER, Answer, ConcernReport, Deadline
from hub.domain.errors import Conflict, InvalidInput, NotPermitted

CODES = ("investigation-opened", "investigation-not-opened", "investigation-ongoing")
DELIVERED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def report(**over: object) -> ConcernReport:
    fields: dict[str, object] = {
        "sender": "nora-grundskola",
        "status": "received",
        "kind": "orosanmalan",
        "report_kind": "orosanmalan",
        "answered": None,
        "delivered_at": DELIVERED,
    }
    return ConcernReport(**{**fields, **over})  # type: ignore[arg-type]


def test_the_receiver_answers_once_and_the_reporter_is_told_the_code_alone() -> None:
    answered = report().answer("investigation-opened", side="receiver", codes=CODES, at=DELIVERED)
    event = answered.decided.event
    assert (event.type, event.notify, event.reason_code) == (CONCERN_ANSWER, "nora-grundskola", "investigation-opened")
    assert event.from_status == event.to_status == answered.decided.status == "received"  # not a status change
    assert event.reason_text is None and event.feedback is None
    with pytest.raises(Conflict):
        report(answered=answered.answer).answer("investigation-ongoing", side="receiver", codes=CODES, at=DELIVERED)


@pytest.mark.parametrize(
    ("over", "side", "code", "error"),
    [
        ({}, "sender", "investigation-opened", NotPermitted),
        ({}, "receiver", "maybe", InvalidInput),
        ({"kind": "remiss"}, "receiver", "investigation-opened", Conflict),
        ({"status": "cancelled"}, "receiver", "investigation-opened", Conflict),
        ({"status": "entered-in-error"}, "receiver", "investigation-opened", Conflict),
    ],
)
def test_what_is_not_answered(over: dict[str, object], side: str, code: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        report(**over).answer(code, side=side, codes=CODES, at=DELIVERED)


def test_overdue_after_the_deadline_from_delivery_unless_answered_or_withdrawn() -> None:
    deadline = Deadline(14)
    due = DELIVERED + timedelta(days=14)
    assert report().state(deadline, due).overdue is False  # type: ignore[union-attr]
    assert report().state(deadline, due + timedelta(seconds=1)).overdue is True  # type: ignore[union-attr]
    late = report(answered=Answer("investigation-ongoing", due + timedelta(days=3)))
    assert late.state(deadline, due + timedelta(days=5)).overdue is False  # type: ignore[union-attr]
    assert report(status="cancelled").state(deadline, due + timedelta(days=1)).overdue is False  # type: ignore[union-attr]
    assert report(delivered_at=None).state(deadline, due + timedelta(days=1)).due_at is None  # type: ignore[union-attr]
    assert report(kind="remiss").state(deadline, due) is None
