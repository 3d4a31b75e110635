"""The referral lifecycle (FHIR Task.status semantics) from the published transition table."""

from __future__ import annotations

import pytest

from hub.domain.errors import Conflict, InvalidInput, NotPermitted
from hub.domain.referrals import Change, categories_carried, strip_to
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
    assert categories_carried(DOC) == {"identity", "concern-text", "health", "school-situation"}
    stripped = strip_to(DOC, ["school-situation"])
    assert categories_carried(stripped) == {"school-situation"}
    assert stripped["concern"]["dimensions"] == [{"code": "safe"}], "metadata travels with every referral"
    assert "child" not in stripped and "text" not in stripped["concern"]
    assert DOC["information"]["health"] == {"x": 1}, "the stored document is untouched"
