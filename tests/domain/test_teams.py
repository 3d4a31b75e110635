"""The team aggregate's rules, without a database: periods never overlap, a handover holds until accepted,
one lead professional at a time and responsibility returning to the named person, referral effects."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from hub.domain.errors import InvalidInput, NotFound, NotPermitted, StateConflict
from hub.domain.referrals import Change, Lifecycle, Referral, Rule
from hub.domain.teams import Team, expected_end
from hub.domain.vocabulary import StageEnd

T0 = datetime(2026, 8, 1, 8, tzinfo=UTC)
STAGES = {"school": frozenset({"grundskola"}), "upper-secondary": frozenset({"gymnasieskola"})}


def named(at: datetime = T0) -> Team:
    team = Team(uuid.uuid4(), STAGES)
    team.name_person("school-a", "grundskola", stage="school", professional_ref=None, period=(at, None))
    return team


def test_named_person_periods_never_overlap_and_touching_periods_do_not() -> None:
    team = named()
    with pytest.raises(StateConflict) as caught:
        team.name_person(
            "school-b", "grundskola", stage="school", professional_ref=None, period=(T0 + timedelta(days=9), None)
        )
    assert caught.value.current["conflicting_assignment"]["organisation_id"] == "school-a"
    team.name_person(
        "school-b", "grundskola", stage="school", professional_ref=None, period=(T0 - timedelta(days=9), T0)
    )
    with pytest.raises(InvalidInput):
        team.name_person("gym", "gymnasieskola", stage="school", professional_ref=None, period=(T0, None))


def test_the_holder_stays_responsible_until_the_offer_is_accepted_and_the_answer_is_told() -> None:
    team = named()
    now = T0 + timedelta(days=300)
    offer = team.offer_handover(
        "school-a", "gym", "gymnasieskola", stage="upper-secondary", professional_ref=None, now=now
    )
    assert team.responsible(now + timedelta(days=5)).organisation == "school-a"
    assert [(n.to_organisation, n.state) for n in team.notices] == [("gym", "open")]
    with pytest.raises(NotPermitted):
        team.accept(offer.id, "school-a", now)
    with pytest.raises(NotFound):
        team.accept(offer.id, "elsewhere", now)
    later = now + timedelta(days=7)
    team.accept(offer.id, "gym", later)
    assert team.responsible(later).organisation == "gym"
    assert team.member_roles(later) == {"gym": ["named-person"]}
    assert [(n.to_organisation, n.state) for n in team.notices][-1] == ("school-a", "accepted")
    with pytest.raises(StateConflict) as caught:
        team.accept(offer.id, "gym", later)
    assert caught.value.current["offer"]["state"] == "accepted"


def test_the_lead_role_ends_and_responsibility_returns_to_the_named_person() -> None:
    team = named()
    now = T0 + timedelta(days=1)
    team.add_participant("school-a", "social", reason="sip", now=now)
    team.appoint_lead("school-a", "social", professional_ref=None, now=now)
    with pytest.raises(StateConflict):
        team.appoint_lead("school-a", "school-a", professional_ref=None, now=now)
    assert team.responsible(now).organisation == "social"
    later = now + timedelta(days=30)
    team.end_lead("social", later, "resolved")
    responsible = team.responsible(later)
    assert (responsible.organisation, responsible.role, responsible.returned) == ("school-a", "named-person", True)


def test_accepting_a_referral_joins_the_team_and_its_end_leaves_it() -> None:
    lifecycle = Lifecycle(
        {
            ("requested", "received"): Rule("hub"),
            ("received", "accepted"): Rule("receiver"),
            ("accepted", "completed"): Rule("receiver"),
        },
        terminal=["completed"],
    )
    referral = Referral("school", "bup", "received", True, False, lifecycle)
    accepted = referral.change(Change("accepted", "receiver"))
    assert accepted.team is not None and (accepted.team.join, accepted.team.organisation) == (True, "bup")
    done = Referral("school", "bup", "accepted", True, False, lifecycle).change(Change("completed", "receiver"))
    assert done.team is not None and (done.team.join, done.team.reason) == (False, "referral-completed")
    team, rid = named(), uuid.uuid4()
    team.join("bup", reason=accepted.team.reason, now=T0, referral_id=rid)
    assert team.leave("bup", reason=done.team.reason, now=T0 + timedelta(days=3), referral_id=uuid.uuid4()) is None
    assert team.leave("bup", reason=done.team.reason, now=T0 + timedelta(days=3), referral_id=rid) is not None
    assert "bup" not in team.member_roles(T0 + timedelta(days=4))


def test_a_stage_ends_on_a_cohort_day_from_the_year_of_birth_and_the_handover_carries_it() -> None:
    assert expected_end(StageEnd(turns=16, month=7, day=1), 2011) == date(2027, 7, 1)
    assert expected_end(StageEnd(turns=6, month=2, day=31), 2018) == date(2024, 2, 29), "the month's last day"
    assert expected_end(None, 2011) is None
    team = Team(uuid.uuid4(), STAGES)
    team.name_person(
        "school-a",
        "grundskola",
        stage="school",
        professional_ref=None,
        period=(T0, None),
        stage_ends_on=date(2027, 7, 1),
    )
    offer = team.offer_handover(
        "school-a",
        "gym",
        "gymnasieskola",
        stage="upper-secondary",
        professional_ref=None,
        now=T0,
        stage_ends_on=date(2030, 7, 1),
    )
    taken = team.accept(offer.id, "gym", T0 + timedelta(days=1))
    assert taken.stage_ends_on == date(2030, 7, 1), "the new holder's stage's end, from the offer"
