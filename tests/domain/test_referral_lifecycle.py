"""The referral lifecycle (FHIR Task.status semantics) from the published transition table."""

from __future__ import annotations

import pytest

from hub.domain.errors import Conflict, InvalidInput, InvalidTransition, NotPermitted
from hub.domain.referrals import Change, Referral, categories_carried, received_from, strip_to
from hub.services.referrals import lifecycle
from hub.vocabulary import load_vocabulary

LIFE = lifecycle(load_vocabulary())


@pytest.mark.parametrize(
    ("current", "change"),
    [
        ("requested", Change("received", "hub")),
        ("requested", Change("cancelled", "sender", reason_text="fel")),
        ("received", Change("accepted", "receiver")),
        ("received", Change("rejected", "receiver", reason_code="wrong-recipient")),
        ("accepted", Change("in-progress", "receiver")),
        ("in-progress", Change("on-hold", "receiver", reason_text="väntar")),
        ("on-hold", Change("in-progress", "receiver")),
        ("in-progress", Change("completed", "receiver", feedback="klart")),
        ("accepted", Change("entered-in-error", "sender")),
    ],
)
def test_allowed_transitions(current: str, change: Change) -> None:
    LIFE.check(current, change, cancellation_requested=False)


@pytest.mark.parametrize(
    ("current", "change", "error"),
    [
        ("completed", Change("in-progress", "receiver"), Conflict),  # terminal
        ("requested", Change("accepted", "receiver"), Conflict),  # not delivered yet
        ("received", Change("accepted", "sender"), NotPermitted),  # the wrong party
        ("received", Change("rejected", "receiver"), InvalidInput),  # no reason
        ("in-progress", Change("on-hold", "receiver"), InvalidInput),  # no reason
        ("in-progress", Change("completed", "receiver"), InvalidInput),  # no feedback
        ("accepted", Change("cancelled", "receiver", reason_text="x"), Conflict),  # nobody asked to cancel
        ("accepted", Change("cancelled", "sender", reason_text="x"), Conflict),  # the sender asks instead
    ],
)
def test_refused_transitions(current: str, change: Change, error: type[Exception]) -> None:
    with pytest.raises(error):
        LIFE.check(current, change, cancellation_requested=False)


def test_a_requested_cancellation_is_confirmed_by_the_receiver() -> None:
    LIFE.check("accepted", Change("cancelled", "receiver", reason_text="ok"), cancellation_requested=True)
    with pytest.raises(Conflict):
        LIFE.may_request_cancellation("requested")
    LIFE.may_request_cancellation("in-progress")


def test_every_terminal_status_is_final() -> None:
    assert LIFE.terminal == {"rejected", "completed", "cancelled", "failed", "entered-in-error"}


DOC = {
    "child": {"personal_identity_number": "201503112383"},
    "concern": {"dimensions": [{"code": "safe"}], "trappan_step": 2, "text": "fri text"},
    "information": {"health": {"x": 1}, "school-situation": {"y": 2}},
}


def test_strip_keeps_only_permitted_categories() -> None:
    assert categories_carried(DOC) == {"identity", "concern-text", "health", "school-situation", "wellbeing-assessment"}
    stripped = strip_to(DOC, ["school-situation"])
    assert categories_carried(stripped) == {"school-situation"}
    assert stripped["concern"] == {}, "the fact of a concern travels, not what it is about"
    assert "child" not in stripped
    assert DOC["information"]["health"] == {"x": 1}, "the stored document is untouched"


def test_the_concerns_codes_travel_with_the_wellbeing_assessment() -> None:
    stripped = strip_to(DOC, ["wellbeing-assessment"])
    assert stripped["concern"] == {"dimensions": [{"code": "safe"}], "trappan_step": 2}
    assert categories_carried(stripped) == {"wellbeing-assessment"}


def _referral(status: str, *, delivered: bool = True, cancellation_requested: bool = False) -> Referral:
    return Referral("s", "r", status, delivered, cancellation_requested, LIFE)


def test_an_invalid_transition_names_the_allowed_ones() -> None:
    with pytest.raises(InvalidTransition) as refused:
        _referral("received").change(Change("completed", "receiver", feedback="x"))
    assert refused.value.allowed_transitions == ["accepted", "cancelled", "rejected"]
    with pytest.raises(InvalidTransition) as final:
        _referral("completed").change(Change("in-progress", "receiver"))
    assert final.value.allowed_transitions == []


def test_hub_made_changes_follow_the_lifecycle() -> None:
    received = _referral("requested", delivered=False).receipt()
    assert received is not None and received.status == "received"
    assert received.event.notify == "s" and received.event.side == "hub"
    assert _referral("received").receipt() is None, "a repeated receipt changes nothing"
    assert _referral("accepted").delivery_failed("receiver-refused", "gone", final=False) is None


def test_a_dead_letter_tells_the_sender_and_leaves_the_status_a_final_failure_fails_it() -> None:
    dead = _referral("requested", delivered=False).delivery_failed("receiver-unreachable", "gone", final=False)
    assert dead is not None and dead.status == "requested" and not dead.abandon_delivery
    assert (dead.event.type, dead.event.notify, dead.event.reason_code) == (
        "delivery-failed",
        "s",
        "receiver-unreachable",
    )
    final = _referral("requested", delivered=False).delivery_failed("no-legal-basis", "withdrawn", final=True)
    assert final is not None and final.status == "failed" and final.event.type == "status"
    assert final.event.notify == "s"
    with pytest.raises(Conflict):
        _referral("completed").hub_change("received")
    with pytest.raises(InvalidInput):
        _referral("requested").hub_change("failed")  # a failure names its reason
    assert received_from(LIFE) == ["requested"]


def test_who_is_told() -> None:
    opened = Referral.send(LIFE)
    assert (opened.status, opened.event.from_status, opened.event.notify) == ("requested", None, None)
    withdrawn = _referral("requested", delivered=False).change(Change("cancelled", "sender", reason_text="fel"))
    assert withdrawn.event.notify is None and withdrawn.abandon_delivery
    accepted = _referral("received").change(Change("accepted", "receiver"))
    assert accepted.event.notify == "s" and not accepted.abandon_delivery
    asked = _referral("accepted").request_cancellation(None, "fel")
    assert asked.cancellation_requested and asked.status == "accepted" and asked.event.notify == "r"
