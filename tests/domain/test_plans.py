"""The plan aggregate without a database: who writes a version, the If-Match precondition, numbering,
who receives what, and sections as data categories."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hub.domain.errors import NotFound, NotPermitted, PreconditionFailed, PreconditionRequired, StateConflict
from hub.domain.plans import ChildPlan, PlanVersion, Withheld, sections_of, split, strip
from hub.domain.teams import Team

NOW = datetime(2027, 3, 1, 10, tzinfo=UTC)
STAGES = {"school": frozenset({"grundskola"})}
SECTIONS = ("reasons", "health", "school_situation", "interventions")
CATEGORIES = {"reasons": "concern-text", "health": "health", "school_situation": "school-situation"}


def team(*, lead: bool = True) -> Team:
    t = Team(uuid.uuid4(), STAGES)
    t.name_person("school", "grundskola", stage="school", professional_ref=None, period=(NOW - timedelta(days=9), None))
    for org in ("social", "bup"):
        t.join(org, reason="referral-accepted", now=NOW - timedelta(days=5))
    if lead:
        t.appoint_lead("school", "social", professional_ref=None, now=NOW - timedelta(days=1))
    return t


def send(plan: ChildPlan, by: str = "social", if_match: str | None = None) -> PlanVersion:
    return plan.add_version(by, sections=SECTIONS, schema_version="1.1.0", if_match=if_match, now=NOW)


def test_the_lead_professional_writes_numbered_versions_each_replacing_the_one_its_if_match_names() -> None:
    plan = ChildPlan(team())
    first = plan.add_version("social", sections=SECTIONS, schema_version="1.1.0", if_match=None, now=NOW)
    with pytest.raises(PreconditionRequired):
        send(plan)
    with pytest.raises(PreconditionFailed) as stale:
        send(plan, if_match='"another"')
    assert stale.value.current == first.public()
    second = plan.add_version("social", sections=SECTIONS, schema_version="1.1.0", if_match=first.etag, now=NOW)
    assert (first.number, second.number, plan.current()) == (1, 2, second)
    with pytest.raises(PreconditionFailed):
        send(plan, if_match=first.etag)
    assert send(plan, if_match="*") is plan.current()
    assert plan.recipients(second, NOW) == ["bup", "school"]


def test_only_the_responsible_organisation_writes_and_outsiders_learn_nothing() -> None:
    with pytest.raises(NotPermitted):
        send(ChildPlan(team()), "school")  # the named person, while there is a lead professional
    assert send(ChildPlan(team(lead=False)), "school") is not None  # no lead: the named person writes
    with pytest.raises(NotPermitted):
        send(ChildPlan(team(lead=False)), "bup")
    with pytest.raises(NotFound):
        send(ChildPlan(team()), "outsider")
    empty = Team(uuid.uuid4(), STAGES)
    empty.join("bup", reason="referral-accepted", now=NOW - timedelta(days=1))
    with pytest.raises(StateConflict) as missing:
        send(ChildPlan(empty), "bup")
    assert missing.value.current == {"missing": ["named-person", "lead-professional"]}


def test_each_section_travels_as_its_data_category_and_unmapped_ones_fail_closed() -> None:
    kept, withheld = split(SECTIONS, CATEGORIES, frozenset({"school-situation", "concern-text", "child-plan"}))
    assert kept == ("reasons", "school_situation", "interventions")
    assert withheld == (Withheld("health", "health"),)
    kept, withheld = split(SECTIONS, CATEGORIES, frozenset({"health"}))
    assert kept == ("health",) and Withheld("interventions", "child-plan") in withheld  # unmapped: child-plan
    plan = ChildPlan(team())
    version = send(plan)
    assert ChildPlan.share("bup", version, CATEGORIES, frozenset()).kind == "plan-notice"
    document = {"schema_version": "1.1.0", "language": "sv", "health": {}, "reasons": {}, "extensions": {}}
    assert sections_of(document) == ("health", "reasons", "extensions")
    assert strip(document, ["reasons"]) == {"schema_version": "1.1.0", "language": "sv", "reasons": {}}


def test_a_member_reviews_a_version_and_its_author_hears_of_it() -> None:
    plan = ChildPlan(team())
    send(plan)
    review = plan.review("bup", 1, {"purpose_met": "yes"}, NOW)
    assert review.notify == "social" and review.version_id == plan.versions[0].id
    assert plan.review("social", 1, {}, NOW).notify is None  # the author reviewing its own: no one to tell
    with pytest.raises(NotFound):
        plan.review("bup", 2, {}, NOW)
    with pytest.raises(NotFound):
        plan.review("outsider", 1, {}, NOW)
