"""The v1 content: codes agreed with the other parts of the hub, and internal consistency."""

from __future__ import annotations

from datetime import date

import pytest

from hub.domain.vocabulary import (
    FiveQuestionsDoc,
    InterventionLevelsDoc,
    LegalBasesDoc,
    OrganisationTypesDoc,
    PracticeModelDoc,
    Vocabulary,
    WellbeingWheelDoc,
)
from hub.vocabulary import load_vocabulary


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary()


AGREED = {
    "organisation-types": {
        "forskola",
        "grundskola",
        "gymnasieskola",
        "elevhalsa",
        "bvc",
        "mvc",
        "vardcentral",
        "forsta-linjen",
        "bup",
        "buh",
        "barnklinik",
        "socialtjanst-myndighet",
        "socialtjanst-oppenvard",
        "lss",
        "familjecentral",
        "polis",
        "kultur-fritid",
        "civilsamhalle",
        "regional-samordning",
    },
    "referral-kinds": {
        "samverkansforfragan",
        "remiss",
        "begaran-om-insats",
        "orosanmalan",
        "sip-kallelse",
        "overlamning",
    },
    "referral-statuses": {
        "requested",
        "received",
        "accepted",
        "rejected",
        "in-progress",
        "on-hold",
        "completed",
        "cancelled",
        "failed",
        "entered-in-error",
    },
    "rejection-reasons": {
        "wrong-recipient",
        "outside-mandate",
        "insufficient-information",
        "no-legal-basis",
        "no-capacity",
        "duplicate",
        "needs-met-elsewhere",
        "other",
    },
    "data-categories": {
        "identity",
        "guardians-contact",
        "school-situation",
        "health",
        "social-services",
        "wellbeing-assessment",
        "concern-text",
        "child-plan",
        "concern-answer",  # 1.1.0: social services' answer to a report of concern (the reporter's only)
    },
    "concern-answers": {"investigation-opened", "investigation-not-opened", "investigation-ongoing"},
    "legal-bases": {"consent", "report-of-concern", "necessary-disclosure"},
    "variant-behovskompassen": {
        "trygghet",
        "tillhorighet",
        "omsorg",
        "fritid",
        "halsa",
        "utveckling",
        "respekteras",
        "ansvar",
    },
}
INDICATORS = {"safe", "healthy", "achieving", "nurtured", "active", "respected", "responsible", "included"}


@pytest.mark.parametrize("name", sorted(AGREED))
def test_agreed_codes(vocab: Vocabulary, name: str) -> None:
    assert vocab.codes(name) == AGREED[name]


def test_wellbeing_wheel(vocab: Vocabulary) -> None:
    wheel = vocab.get("wellbeing-wheel")
    assert isinstance(wheel, WellbeingWheelDoc)
    assert vocab.indicator_codes() == INDICATORS
    assert {g.code for g in wheel.goals} == {
        "successful-learners",
        "confident-individuals",
        "responsible-citizens",
        "effective-contributors",
    }
    assert {c for g in wheel.goals for c in g.indicators} == INDICATORS
    crc = {i.code: set(i.crc_articles) for i in wheel.indicators}
    assert crc["safe"] == {19, 34, 36} and crc["respected"] == {12, 13, 14} and crc["included"] == {2, 23, 27}
    for i in wheel.indicators:
        for audience in (i.questions.child, i.questions.guardian, i.questions.professional):
            assert 2 <= len(audience) <= 3


def test_organisation_sectors(vocab: Vocabulary) -> None:
    doc = vocab.get("organisation-types")
    assert isinstance(doc, OrganisationTypesDoc)
    sector = {c.code: c.sector for c in doc.concept}
    assert {c for c, s in sector.items() if s == "school"} == {
        "forskola",
        "grundskola",
        "gymnasieskola",
        "elevhalsa",
    }
    assert {c for c, s in sector.items() if s == "healthcare"} == {
        "bvc",
        "mvc",
        "vardcentral",
        "forsta-linjen",
        "bup",
        "buh",
        "barnklinik",
    }
    assert {c for c, s in sector.items() if s == "social-services"} == {
        "socialtjanst-myndighet",
        "socialtjanst-oppenvard",
        "lss",
    }


def test_legal_bases(vocab: Vocabulary) -> None:
    doc = vocab.get("legal-bases", "1.0.0")  # published, never changed: one undated statute per basis
    assert isinstance(doc, LegalBasesDoc)
    bases = {c.code: c for c in doc.concept}
    consent, report = bases["consent"].statute, bases["report-of-concern"].statute
    assert consent is not None and "12 kap. 2 §" in consent.sv and bases["consent"].requires_consent
    assert report is not None and "14 kap. 1 §" in report.sv and bases["report-of-concern"].breaks_secrecy
    assert set(bases["report-of-concern"].recipient_organisation_types) <= vocab.codes("organisation-types")
    assert bases["necessary-disclosure"].requires_recorded_assessment


def test_legal_bases_v2_dates_the_statutes(vocab: Vocabulary) -> None:
    """Version 2 is the default; the duty to report concern cites SoL (2001:453) until 30 June 2025 and
    SoL (2025:400) from 1 July 2025, whose chapter and section the hub's sources did not confirm."""
    assert vocab.latest_version("legal-bases") == "2.0.0"
    doc = vocab.get("legal-bases")
    assert isinstance(doc, LegalBasesDoc)
    report = doc.basis("report-of-concern")
    assert report is not None and report.statute is None
    before, after = report.statute_at(date(2025, 6, 30)), report.statute_at(date(2025, 7, 1))
    assert before is not None and "14 kap. 1 § socialtjänstlagen (2001:453)" in before.citation.sv
    assert before.provision_verified and before.valid_until == date(2025, 7, 1)
    assert after is not None and "(2025:400)" in after.citation.sv and not after.provision_verified
    assert report.statute_at(date(2001, 12, 31)) is None  # before SoL (2001:453) took effect
    for basis in doc.concept:
        assert basis.statutes and all(s.sources for s in basis.statutes)
        assert basis.statute_at(date(2026, 1, 1)) is not None, basis.code


def test_referral_lifecycle(vocab: Vocabulary) -> None:
    transitions = vocab.referral_transitions()
    pairs = {(t.from_, t.to): t for t in transitions}
    assert pairs[("requested", "received")].actor == "hub"
    assert pairs[("requested", "failed")].actor == "hub"
    assert pairs[("received", "accepted")].actor == pairs[("received", "rejected")].actor == "receiver"
    assert pairs[("in-progress", "completed")].feedback_required
    assert {("in-progress", "on-hold"), ("on-hold", "in-progress")} <= set(pairs)
    with_reason = {t.to for t in transitions if t.reason_required}
    assert with_reason == {"rejected", "on-hold", "cancelled", "failed"}
    terminal = {c.code for c in vocab.get("referral-statuses").concepts() if c.properties["terminal"]}
    assert terminal == {"rejected", "completed", "cancelled", "failed", "entered-in-error"}
    non_final = AGREED["referral-statuses"] - terminal
    assert {f for (f, to), t in pairs.items() if to == "entered-in-error" and t.actor == "sender"} == non_final
    assert all(t.from_ not in terminal for t in transitions)
    assert {f for (f, to) in pairs if to == "failed"} == {"requested"}


def test_referral_transitions_serialise_with_from(vocab: Vocabulary) -> None:
    dumped = vocab.document_json("referral-statuses")["transitions"][0]
    assert dumped["from"] == "requested" and dumped["to"] == "received"


def test_five_questions_and_steps(vocab: Vocabulary) -> None:
    five = vocab.get("five-questions")
    assert isinstance(five, FiveQuestionsDoc)
    assert [q.number for q in five.question] == [1, 2, 3, 4, 5]
    assert [q.number for q in five.question if q.involves_other_agencies] == [5]
    steps = vocab.get("practice-model-steps")
    assert isinstance(steps, PracticeModelDoc)
    assert [s.tool for s in steps.step] == [
        "wellbeing-wheel",
        "my-world-triangle",
        "resilience-matrix",
        "wellbeing-wheel",
        "child-plan",
        "child-plan",
    ]
    assert {s.tool for s in steps.step} <= set(vocab.names())


def test_triangle_and_matrix(vocab: Vocabulary) -> None:
    triangle = vocab.get("my-world-triangle")
    assert [len(s.areas) for s in triangle.sides] == [7, 7, 7]  # type: ignore[union-attr]
    matrix = vocab.get("resilience-matrix")
    poles = {p.code for a in matrix.axes for p in a.poles}  # type: ignore[union-attr]
    assert poles == {"resilience", "vulnerability", "protective-environment", "adversity"}


def test_intervention_levels(vocab: Vocabulary) -> None:
    doc = vocab.get("intervention-levels")
    assert isinstance(doc, InterventionLevelsDoc)
    assert [p.code for p in doc.prevention_levels] == ["universal", "selective", "indicated"]
    assert [s.code for s in doc.steps] == ["step-0", "step-1", "step-2", "step-3"]
    assert [s.code for s in doc.steps if s.critical] == ["step-2"]
    assert {r.step: r.levels for r in doc.relations}["step-3"] == ("indicated",)


def test_child_plan_schema_enums_follow_the_vocabulary(vocab: Vocabulary) -> None:
    defs = vocab.get("child-plan").json_schema["$defs"]  # type: ignore[union-attr]
    assert set(defs["indicator"]["enum"]) == vocab.indicator_codes()
    assert set(defs["organisation_type"]["enum"]) == vocab.codes("organisation-types")
    props = vocab.get("child-plan").json_schema["properties"]  # type: ignore[union-attr]
    tabb = props["interventions"]["items"]["properties"]["tabb_step"]["enum"]
    assert set(tabb) == {c.code for c in vocab.get("intervention-levels").steps}  # type: ignore[union-attr]
    quadrants = set(props["needs"]["items"]["properties"]["resilience_quadrant"]["enum"])
    assert quadrants == {q.code for q in vocab.get("resilience-matrix").quadrants}  # type: ignore[union-attr]
