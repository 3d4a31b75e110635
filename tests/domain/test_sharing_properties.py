"""Properties of the decision engine (hypothesis): whatever the facts,

- no decision permits a category outside its basis (the consent's / assessment's categories and the
  policy's list for that basis), nor outside the request;
- a withdrawn or expired consent never allows a share;
- the decision is deterministic: the same facts in any order give an equal decision;
- the screening that picks the basis agrees with the explanation of that basis.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.domain.policy import LEGAL_BASES, Policy
from hub.domain.sharing import (
    Consent,
    Decision,
    NecessityAssessment,
    Party,
    ShareRequest,
    consent_state,
    decide,
)

from .facts import AT, BUP, CHILD, EHT, OTHER_CHILD, SCHOOL, SOC, SOC_OPEN, VC

CATEGORIES = [
    "identity",
    "guardians-contact",
    "school-situation",
    "health",
    "social-services",
    "wellbeing-assessment",
    "concern-text",
    "child-plan",
]
PARTIES = [SCHOOL, EHT, VC, BUP, SOC, SOC_OPEN]
PURPOSES = ["remiss", "samverkansforfragan", "orosanmalan", "sip-kallelse"]

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

categories = st.frozensets(st.sampled_from(CATEGORIES))
days = st.integers(min_value=-400, max_value=30)


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "organisation_ids": draw(st.frozensets(st.sampled_from([p.organisation_id for p in PARTIES]), max_size=2)),
        "organisation_types": draw(st.frozensets(st.sampled_from([p.organisation_type for p in PARTIES]), max_size=3)),
    }


@st.composite
def grantors(draw: st.DrawFn) -> list[dict[str, Any]]:
    people = draw(
        st.lists(st.sampled_from(["guardian-1", "guardian-2", "guardian-3", "child"]), max_size=4, unique=True)
    )
    return [
        {
            "role": "child" if ref == "child" else "guardian",
            "reference": ref,
            "agreed": draw(st.booleans().map(lambda b: b or draw(st.booleans()))),  # mostly agreeing
            "categories": draw(st.none() | categories),
        }
        for ref in people
    ]


@st.composite
def consents(draw: st.DrawFn, consent_id: str) -> Consent:
    valid_from = AT + timedelta(days=draw(days))
    withdrawn = draw(st.none() | days)
    return Consent.model_validate(
        {
            "id": consent_id,
            "child_pseudonym": draw(st.sampled_from([CHILD, CHILD, CHILD, OTHER_CHILD])),
            "recording_organisation_id": SCHOOL.organisation_id,
            "grantors": draw(grantors()),
            "guardian_count": draw(st.integers(min_value=0, max_value=3)),
            "data_categories": draw(categories),
            "from_parties": draw(scopes()),
            "to_parties": draw(scopes()),
            "purposes": draw(st.frozensets(st.sampled_from(PURPOSES))),
            "valid_from": valid_from,
            "valid_until": valid_from + timedelta(days=draw(st.integers(min_value=-5, max_value=500))),
            "information_given": {"language": "sv", "form": "written"},
            "evidence_reference": "doc",
            "withdrawn_at": None if withdrawn is None else AT + timedelta(days=withdrawn),
            "withdrawn_by": None if withdrawn is None else "guardian-1",
            "withdrawal_reason": None if withdrawn is None else "no",
        }
    )


@st.composite
def assessments(draw: st.DrawFn, assessment_id: str) -> NecessityAssessment:
    return NecessityAssessment.model_validate(
        {
            "id": assessment_id,
            "child_pseudonym": draw(st.sampled_from([CHILD, CHILD, OTHER_CHILD])),
            "organisation_id": draw(st.sampled_from(PARTIES)).organisation_id,
            "recipient_organisation_id": draw(st.sampled_from(PARTIES)).organisation_id,
            "decided_by": {"person": draw(st.sampled_from(["hsa:1", ""])), "role": "rektor"},
            "justification": draw(st.sampled_from(["needed for our own work", " "])),
            "case_reference": "case-1",
            "data_categories": draw(categories),
            "decided_at": AT + timedelta(days=draw(st.integers(min_value=-40, max_value=2))),
        }
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    return Policy.model_validate(
        {
            "all_guardians_must_consent": draw(st.booleans()),
            "child_consent_age": {
                "default": draw(st.integers(min_value=10, max_value=18)),
                **draw(st.dictionaries(st.sampled_from(CATEGORIES), st.integers(min_value=0, max_value=18))),
            },
            "max_consent_duration_days": draw(st.integers(min_value=30, max_value=500)),
            "legal_basis_categories": {basis: draw(categories) for basis in LEGAL_BASES},
            "report_of_concern_recipient_types": draw(
                st.frozensets(st.sampled_from([p.organisation_type for p in PARTIES]), max_size=2)
            ),
            "necessity_assessment_max_age_days": draw(st.integers(min_value=1, max_value=60)),
        }
    )


@st.composite
def requests(draw: st.DrawFn) -> ShareRequest:
    hint = draw(st.none() | st.sampled_from(LEGAL_BASES))
    reference = None
    if hint in ("consent", "necessary-disclosure"):
        reference = draw(st.none() | st.sampled_from(["c-1", "c-2", "na-1", "nope"]))
    return ShareRequest(
        from_party=draw(st.sampled_from(PARTIES)),
        to_party=draw(st.sampled_from(PARTIES)),
        child_pseudonym=CHILD,
        child_age=draw(st.integers(min_value=0, max_value=17)),
        purpose=draw(st.sampled_from(PURPOSES)),
        requested_categories=draw(categories.filter(bool)),
        at=AT + timedelta(hours=draw(st.integers(min_value=-48, max_value=48))),
        legal_basis=hint,
        basis_reference=reference,
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[ShareRequest, list[Consent], list[NecessityAssessment], Policy]:
    n_consents = draw(st.integers(min_value=0, max_value=5))
    n_assessments = draw(st.integers(min_value=0, max_value=2))
    return (
        draw(requests()),
        [draw(consents(f"c-{i}")) for i in range(1, n_consents + 1)],
        [draw(assessments(f"na-{i}")) for i in range(1, n_assessments + 1)],
        draw(policies()),
    )


def _matches(party: Party, scope: Any) -> bool:
    return party.organisation_id in scope.organisation_ids or party.organisation_type in scope.organisation_types


@PROPERTY_SETTINGS
@given(worlds())
def test_no_decision_permits_a_category_outside_its_basis(world: Any) -> None:
    request, consent_facts, assessment_facts, policy = world
    decision = decide(request, consents=consent_facts, assessments=assessment_facts, policy=policy)
    permitted, denied = set(decision.permitted_categories), set(decision.denied_categories)
    requested = request.requested_categories

    assert permitted <= requested
    assert permitted | denied == requested and not permitted & denied
    assert decision.allowed == bool(permitted)
    if not decision.allowed:
        assert decision.legal_basis is None and decision.basis_reference is None
        return
    assert decision.legal_basis is not None
    if request.legal_basis is not None:
        assert decision.legal_basis == request.legal_basis
    assert permitted <= policy.categories_for(decision.legal_basis)

    if decision.legal_basis == "consent":
        consent = next(c for c in consent_facts if c.id == decision.basis_reference)
        assert consent.child_pseudonym == request.child_pseudonym
        assert consent_state(consent, request.at) == "active"
        assert consent.valid_until - consent.valid_from <= timedelta(days=policy.max_consent_duration_days)
        assert _matches(request.from_party, consent.from_parties)
        assert _matches(request.to_party, consent.to_parties)
        assert request.purpose in consent.purposes
        assert permitted <= consent.data_categories
        for category in permitted:
            agreeing = {
                g.reference
                for g in consent.grantors
                if g.role == "guardian" and g.agreed and (g.categories is None or category in g.categories)
            }
            required = consent.guardian_count if policy.all_guardians_must_consent else 1
            assert len(agreeing) >= max(required, 1)
            if request.child_age >= policy.child_consent_age_for(category):
                assert any(
                    g.role == "child" and g.agreed and (g.categories is None or category in g.categories)
                    for g in consent.grantors
                )
    elif decision.legal_basis == "report-of-concern":
        assert decision.basis_reference is None
        assert request.purpose == policy.report_of_concern_purpose
        assert request.to_party.organisation_type in policy.report_of_concern_recipient_types
    else:
        found = next(a for a in assessment_facts if a.id == decision.basis_reference)
        assert found.child_pseudonym == request.child_pseudonym
        assert permitted <= found.data_categories
        assert found.organisation_id == request.from_party.organisation_id
        assert found.recipient_organisation_id == request.to_party.organisation_id
        assert timedelta(0) <= request.at - found.decided_at <= timedelta(days=policy.necessity_assessment_max_age_days)
        assert found.justification.strip() and found.case_reference.strip() and found.decided_by.person.strip()


@PROPERTY_SETTINGS
@given(worlds(), st.data())
def test_a_withdrawn_or_expired_consent_never_allows(world: Any, data: st.DataObject) -> None:
    request, consent_facts, _, policy = world
    spoiled = []
    for consent in consent_facts:
        if data.draw(st.booleans()):
            moment = request.at - timedelta(seconds=data.draw(st.integers(min_value=0, max_value=10**6)))
            spoiled.append(
                Consent.model_validate(
                    {
                        **consent.model_dump(),
                        "withdrawn_at": moment,
                        "withdrawn_by": "g",
                        "withdrawal_reason": "r",
                    }
                )
            )
        else:
            until = request.at - timedelta(seconds=data.draw(st.integers(min_value=0, max_value=10**6)))
            spoiled.append(
                Consent.model_validate(
                    {**consent.model_dump(), "valid_from": until - timedelta(days=10), "valid_until": until}
                )
            )
    decision = decide(request, consents=spoiled, assessments=[], policy=policy)
    assert decision.legal_basis != "consent"
    assert all(consent_state(c, request.at) in ("withdrawn", "expired") for c in spoiled)


@PROPERTY_SETTINGS
@given(worlds(), st.randoms(use_true_random=False))
def test_the_decision_is_deterministic_for_the_same_facts(world: Any, rnd: Any) -> None:
    request, consent_facts, assessment_facts, policy = world
    first = decide(request, consents=consent_facts, assessments=assessment_facts, policy=policy)
    shuffled_consents, shuffled_assessments = list(consent_facts), list(assessment_facts)
    rnd.shuffle(shuffled_consents)
    rnd.shuffle(shuffled_assessments)
    again = decide(request, consents=tuple(shuffled_consents), assessments=iter(shuffled_assessments), policy=policy)
    assert again == first


@PROPERTY_SETTINGS
@given(worlds())
def test_invoking_the_chosen_basis_gives_the_same_categories(world: Any) -> None:
    """The hot path screens without building text; invoking the chosen basis explicitly goes through
    the explaining path when anything is denied. Both must agree."""
    request, consent_facts, assessment_facts, policy = world
    decision = decide(request, consents=consent_facts, assessments=assessment_facts, policy=policy)
    if not decision.allowed:
        return
    assert decision.legal_basis is not None
    reference = decision.basis_reference if decision.legal_basis != "report-of-concern" else None
    invoked = request.model_copy(update={"legal_basis": decision.legal_basis, "basis_reference": reference})
    again = decide(invoked, consents=consent_facts, assessments=assessment_facts, policy=policy)
    assert again.permitted_categories == decision.permitted_categories
    assert again.reasons[0] == decision.reasons[0]


@PROPERTY_SETTINGS
@given(worlds())
def test_reasons_are_bilingual_and_facts_about_other_children_do_not_matter(world: Any) -> None:
    request, consent_facts, assessment_facts, policy = world
    decision = decide(request, consents=consent_facts, assessments=assessment_facts, policy=policy)
    for item in (*decision.reasons, *decision.remedies):
        assert item.sv.strip() and item.en.strip()
    mine = [c for c in consent_facts if c.child_pseudonym == request.child_pseudonym]
    my_assessments = [a for a in assessment_facts if a.child_pseudonym == request.child_pseudonym]
    assert decide(request, consents=mine, assessments=my_assessments, policy=policy) == decision


def test_decision_is_reproducible_as_a_value() -> None:
    request = ShareRequest(
        from_party=SCHOOL,
        to_party=BUP,
        child_pseudonym=CHILD,
        child_age=9,
        purpose="remiss",
        requested_categories=frozenset({"identity"}),
        at=AT,
    )
    first: Decision = decide(request, consents=[], assessments=[], policy=Policy())
    assert first == decide(request, consents=[], assessments=[], policy=Policy())
    assert hash(first) == hash(decide(request, consents=[], assessments=[], policy=Policy()))
