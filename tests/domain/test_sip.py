"""The SIP meeting aggregate's rules, without a database: only invitees with a basis are told, a withheld
invitee sees nothing, the latest answer stands (a repeat sends nothing), a cancelled meeting takes no
answers, and the invitee list's own rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hub.domain.errors import InvalidInput, NotFound, NotPermitted, StateConflict
from hub.domain.sip import MAX_INVITEES, Meeting, check_invitees

T0 = datetime(2027, 2, 20, 9, tzinfo=UTC)
SOON = T0 + timedelta(days=10)


def meeting() -> Meeting:
    decided = [("school", True, uuid.uuid4()), ("bup", True, uuid.uuid4()), ("health", False, uuid.uuid4())]
    return Meeting.invite(inviter="social", times=[SOON], decided=decided, now=T0)


def test_only_invitees_with_a_basis_are_told_and_a_withheld_one_sees_nothing() -> None:
    m = meeting()
    assert [(e.type, e.to_organisation) for e in m.events] == [("invited", "school"), ("invited", "bup")]
    assert {i.organisation for i in m.visible_to("social")} == {"school", "bup", "health"}
    assert {i.organisation for i in m.visible_to("school")} == {"school", "bup"}
    for outsider in ("health", "someone-else"):
        with pytest.raises(NotFound):
            m.visible_to(outsider)
        with pytest.raises(NotFound):
            m.answer(outsider, "accepted", T0)


def test_the_latest_answer_stands_and_only_a_change_travels_to_the_inviter() -> None:
    m = meeting()
    m.events.clear()
    m.answer("school", "accepted", T0)
    m.answer("school", "accepted", T0 + timedelta(minutes=1))  # a retry: nothing new
    m.answer("school", "proposed-time", T0 + timedelta(hours=1), proposed_time=SOON + timedelta(days=1))
    assert [(e.type, e.to_organisation, e.answer) for e in m.events] == [
        ("answered", "social", "accepted"),
        ("answered", "social", "proposed-time"),
    ]
    [school] = [i for i in m.invitations if i.organisation == "school"]
    assert (school.answer, school.proposed_time) == ("proposed-time", SOON + timedelta(days=1))


def test_an_answer_needs_its_time_and_the_inviter_does_not_answer() -> None:
    m = meeting()
    with pytest.raises(InvalidInput) as caught:
        m.answer("bup", "proposed-time", T0)
    assert caught.value.errors[0].pointer == "/proposed_time"
    with pytest.raises(InvalidInput):
        m.answer("bup", "proposed-time", T0, proposed_time=T0 - timedelta(hours=1))
    with pytest.raises(NotPermitted):
        m.answer("social", "accepted", T0)


def test_cancelling_tells_the_invited_and_then_nothing_more_is_taken() -> None:
    m = meeting()
    with pytest.raises(NotPermitted):
        m.cancel("school", T0, None)
    m.events.clear()
    m.cancel("social", T0, "Ny tid")
    assert [(e.type, e.to_organisation) for e in m.events] == [("cancelled", "school"), ("cancelled", "bup")]
    with pytest.raises(StateConflict) as caught:
        m.answer("school", "declined", T0)
    assert caught.value.current["meeting"]["state"] == "cancelled"
    with pytest.raises(StateConflict):
        m.cancel("social", T0, None)


@pytest.mark.parametrize(
    ("invitees", "pointer", "code"),
    [
        ([], "/invitees", "empty"),
        ([f"o{n}" for n in range(MAX_INVITEES + 1)], "/invitees", "too-many"),
        (["social"], "/invitees/0", "self-invite"),
        (["a", "b", "a"], "/invitees/2", "duplicate"),
    ],
)
def test_the_invitee_list(invitees: list[str], pointer: str, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_invitees("social", invitees)
    assert [(e.pointer, e.code) for e in caught.value.errors] == [(pointer, code)]


def test_times_are_still_to_come() -> None:
    with pytest.raises(InvalidInput) as caught:
        Meeting.invite(inviter="social", times=[SOON, T0], decided=[("school", True, uuid.uuid4())], now=T0)
    assert caught.value.errors[0].pointer == "/times/1"
