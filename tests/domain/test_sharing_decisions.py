"""The decision engine, table-driven: each row is one situation from DOMAIN.md ("Lawful sharing",
"Data about a child") with the decision the hub must reach, its legal basis, the permitted and denied
categories, and the reason and remedy codes that must explain it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from hub.domain.policy import Policy
from hub.domain.sharing import REMEDY_TEXTS, Consent, Decision, NecessityAssessment, ShareRequest, decide

from .facts import (
    AT,
    BUP,
    CHILD,
    EHT,
    OTHER_CHILD,
    SOC,
    SOC_OPEN,
    VC,
    assessment,
    child,
    consent,
    guardian,
    policy,
    request,
)

ALL = [
    "identity",
    "guardians-contact",
    "school-situation",
    "health",
    "social-services",
    "wellbeing-assessment",
    "concern-text",
    "child-plan",
]


@dataclass
class Case:
    id: str
    request: ShareRequest
    allowed: bool
    basis: str | None = None
    reference: str | None = None
    permitted: set[str] = field(default_factory=set)
    consents: list[Consent] = field(default_factory=list)
    assessments: list[NecessityAssessment] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    reasons: set[str] = field(default_factory=set)  # codes that must be among the reasons
    remedies: set[str] = field(default_factory=set)  # codes that must be among the remedies
    remedy_mentions: str | None = None  # a word some remedy's English text must contain


def roc(**overrides: Any) -> ShareRequest:
    """A report of concern from the school to social services."""
    data: dict[str, Any] = {
        "to_party": SOC,
        "purpose": "orosanmalan",
        "requested_categories": ["identity", "concern-text"],
    }
    data.update(overrides)
    return request(**data)


CASES = [
    # ----------------------------------------------------------------------------------- consent
    Case(
        "consent-covers-everything-requested",
        request(),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent()],
        reasons={"consent-applies"},
    ),
    Case(
        "golden-rule-strips-health-not-in-consent",
        request(requested_categories=["identity", "health"]),
        True,
        "consent",
        "c-1",
        {"identity"},
        consents=[consent(data_categories=["identity"])],
        reasons={"consent-applies", "consent-categories-not-covered", "categories-denied"},
        remedies={"consent-covering-categories"},
        remedy_mentions="health",
    ),
    Case(
        "consent-expired",
        request(at=AT + timedelta(days=300)),
        False,
        consents=[consent()],
        reasons={"no-legal-basis", "consent-expired"},
        remedies={"renew-consent"},
    ),
    Case(
        "consent-expires-exactly-at-valid-until",
        request(at=AT + timedelta(days=270)),
        False,
        consents=[consent()],
        reasons={"consent-expired"},
        remedies={"renew-consent"},
    ),
    Case(
        "consent-not-yet-valid",
        request(at=AT - timedelta(days=31)),
        False,
        consents=[consent()],
        reasons={"consent-not-yet-valid"},
        remedies={"wait-for-consent-start"},
    ),
    Case(
        "consent-valid-from-the-first-instant",
        request(at=AT - timedelta(days=30)),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent()],
    ),
    Case(
        "consent-withdrawn-before-the-share",
        request(),
        False,
        consents=[consent(withdrawn_at=AT - timedelta(hours=1), withdrawn_by="guardian-2", withdrawal_reason="no")],
        reasons={"consent-withdrawn"},
        remedies={"new-consent"},
    ),
    Case(
        "consent-withdrawn-at-the-instant-of-the-share",
        request(),
        False,
        consents=[consent(withdrawn_at=AT, withdrawn_by="guardian-2", withdrawal_reason="no")],
        reasons={"consent-withdrawn"},
    ),
    Case(
        "consent-withdrawn-after-the-share-still-covered-it",
        request(),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent(withdrawn_at=AT + timedelta(days=1), withdrawn_by="guardian-2", withdrawal_reason="no")],
    ),
    Case(
        "recipient-bup-not-in-consent",
        request(),
        False,
        consents=[consent(to_parties={"organisation_types": ["socialtjanst-oppenvard"]})],
        reasons={"consent-recipient-not-covered"},
        remedies={"consent-covering-recipient"},
        remedy_mentions="bup",
    ),
    Case(
        "recipient-covered-by-organisation-id",
        request(),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent(to_parties={"organisation_ids": [BUP.organisation_id]})],
    ),
    Case(
        "other-organisation-of-a-covered-type-by-id-only",
        request(to_party=BUP.model_copy(update={"organisation_id": "region-bup-karlskoga"})),
        False,
        consents=[consent(to_parties={"organisation_ids": [BUP.organisation_id]})],
        reasons={"consent-recipient-not-covered"},
        remedies={"consent-covering-recipient"},
    ),
    Case(
        # The health centre recorded it (so it may see it), for the school and the student health team.
        "sender-vardcentral-not-in-consent",
        request(from_party=VC),
        False,
        consents=[consent(recording_organisation_id=VC.organisation_id)],
        reasons={"consent-sender-not-covered"},
        remedies={"consent-covering-sender"},
    ),
    Case(
        # Recorded by the school, naming the health centre's type nowhere and its id nowhere: the health
        # centre learns nothing about it, only that no consent it can see covers the share.
        "sender-vardcentral-not-told-of-the-schools-consent",
        request(from_party=VC),
        False,
        consents=[consent()],
        reasons={"no-legal-basis", "no-consent"},
        remedies={"record-consent"},
    ),
    Case(
        # Recorded by the school and naming the student health team by type only: it allows, unnamed.
        "sender-elevhalsa-covered-by-type",
        request(from_party=EHT),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent()],
        reasons={"consent-of-another-organisation-applies"},
    ),
    Case(
        "purpose-sip-kallelse-not-in-consent",
        request(purpose="sip-kallelse"),
        False,
        consents=[consent()],
        reasons={"consent-purpose-not-covered"},
        remedies={"consent-covering-purpose"},
    ),
    Case(
        "one-guardian-of-two-with-joint-custody",
        request(),
        False,
        consents=[consent(grantors=[guardian("guardian-1")])],
        reasons={"consent-guardian-missing"},
        remedies={"consent-from-second-guardian"},
    ),
    Case(
        "second-guardian-refused",
        request(),
        False,
        consents=[consent(grantors=[guardian("guardian-1"), guardian("guardian-2", agreed=False)])],
        reasons={"consent-guardian-missing"},
        remedies={"consent-from-second-guardian"},
    ),
    Case(
        "single-guardian-with-sole-custody",
        request(),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent(grantors=[guardian("guardian-1")], guardian_count=1)],
    ),
    Case(
        "one-of-two-guardians-when-policy-asks-only-one",
        request(),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent(grantors=[guardian("guardian-1")])],
        policy=policy(all_guardians_must_consent=False),
    ),
    Case(
        "second-guardian-agreed-to-fewer-categories",
        request(),
        True,
        "consent",
        "c-1",
        {"identity"},
        consents=[consent(grantors=[guardian("guardian-1"), guardian("guardian-2", categories=["identity"])])],
        reasons={"consent-guardian-categories", "categories-denied"},
        remedies={"consent-covering-categories"},
        remedy_mentions="school-situation",
    ),
    Case(
        "child-aged-14-needs-no-own-consent",
        request(child_age=14),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent()],
    ),
    Case(
        "child-aged-15-without-own-consent",
        request(child_age=15),
        False,
        consents=[consent()],
        reasons={"consent-child-missing"},
        remedies={"child-consent"},
    ),
    Case(
        "child-aged-15-with-own-consent",
        request(child_age=15),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent(grantors=[guardian("guardian-1"), guardian("guardian-2"), child()])],
    ),
    Case(
        "child-aged-15-agreed-to-identity-only",
        request(child_age=15),
        True,
        "consent",
        "c-1",
        {"identity"},
        consents=[consent(grantors=[guardian("guardian-1"), guardian("guardian-2"), child(categories=["identity"])])],
        reasons={"consent-child-missing", "categories-denied"},
        remedies={"child-consent"},
    ),
    Case(
        "child-aged-14-policy-asks-own-consent-for-health-from-13",
        request(child_age=14, requested_categories=["identity", "health"]),
        True,
        "consent",
        "c-1",
        {"identity"},
        consents=[consent(data_categories=["identity", "health"])],
        policy=policy(child_consent_age={"default": 15, "health": 13}),
        reasons={"consent-child-missing"},
        remedies={"child-consent"},
        remedy_mentions="health",
    ),
    Case(
        "child-refusal-below-the-age-does-not-block",
        request(child_age=12),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent(grantors=[guardian("guardian-1"), guardian("guardian-2"), child(agreed=False)])],
    ),
    Case(
        "consent-longer-than-policy-maximum-is-invalid",
        request(),
        False,
        consents=[consent(valid_until=AT + timedelta(days=400))],
        reasons={"consent-exceeds-max-duration"},
        remedies={"consent-within-max-duration"},
    ),
    Case(
        "policy-with-longer-maximum-accepts-the-same-consent",
        request(),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent(valid_until=AT + timedelta(days=400))],
        policy=policy(max_consent_duration_days=500),
    ),
    Case(
        "policy-never-lets-consent-carry-child-plan",
        request(requested_categories=["identity", "child-plan"]),
        True,
        "consent",
        "c-1",
        {"identity"},
        consents=[consent(data_categories=["identity", "child-plan"])],
        policy=policy(legal_basis_categories={**Policy().legal_basis_categories, "consent": ["identity"]}),
        reasons={"category-not-allowed-for-basis"},
    ),
    Case(
        "consent-about-another-child-is-ignored",
        request(),
        False,
        consents=[consent(child_pseudonym=OTHER_CHILD)],
        reasons={"no-consent", "no-necessity-assessment"},
        remedies={"record-consent", "recorded-necessity-assessment"},
    ),
    Case(
        "no-facts-at-all-is-denied",
        request(),
        False,
        reasons={"no-legal-basis", "no-consent", "no-necessity-assessment"},
        remedies={"record-consent", "recorded-necessity-assessment"},
    ),
    Case(
        "invoked-consent-does-not-exist",
        request(legal_basis="consent", basis_reference="c-404"),
        False,
        consents=[consent()],
        reasons={"consent-not-found"},
        remedies={"record-consent"},
    ),
    Case(
        "invoked-consent-is-used-even-if-another-covers-more",
        request(legal_basis="consent", basis_reference="c-2", requested_categories=["identity", "health"]),
        True,
        "consent",
        "c-2",
        {"identity"},
        consents=[consent(id="c-1", data_categories=["identity", "health"]), consent(id="c-2")],
    ),
    Case(
        "the-consent-permitting-most-wins",
        request(),
        True,
        "consent",
        "c-2",
        {"identity", "school-situation"},
        consents=[consent(id="c-1", data_categories=["identity"]), consent(id="c-2")],
    ),
    Case(
        "equal-consents-tie-break-on-lowest-id",
        request(),
        True,
        "consent",
        "c-a",
        {"identity", "school-situation"},
        consents=[consent(id="c-b"), consent(id="c-a")],
    ),
    # ------------------------------------------------------------------------ report of concern
    Case(
        "report-of-concern-to-social-services-needs-no-consent",
        roc(),
        True,
        "report-of-concern",
        None,
        {"identity", "concern-text"},
        reasons={"report-of-concern-applies"},
    ),
    Case(
        "report-of-concern-carries-only-its-categories",
        roc(requested_categories=["identity", "concern-text", "health", "social-services"]),
        True,
        "report-of-concern",
        None,
        {"identity", "concern-text"},
        reasons={"report-of-concern-applies", "category-not-allowed-for-basis", "categories-denied"},
    ),
    Case(
        "report-of-concern-to-bup-is-denied",
        roc(to_party=BUP),
        False,
        reasons={"report-recipient-type-not-allowed"},
        remedies={"report-to-allowed-recipient-type"},
        remedy_mentions="socialtjanst-myndighet",
    ),
    Case(
        "report-of-concern-to-social-services-open-care-is-denied-by-default",
        roc(to_party=SOC_OPEN),
        False,
        reasons={"report-recipient-type-not-allowed"},
        remedies={"report-to-allowed-recipient-type"},
    ),
    Case(
        "report-of-concern-to-open-care-when-policy-allows-it",
        roc(to_party=SOC_OPEN),
        True,
        "report-of-concern",
        None,
        {"identity", "concern-text"},
        policy=policy(report_of_concern_recipient_types=["socialtjanst-myndighet", "socialtjanst-oppenvard"]),
    ),
    Case(
        "report-of-concern-invoked-for-another-purpose",
        request(to_party=SOC, legal_basis="report-of-concern"),
        False,
        reasons={"report-purpose-mismatch"},
    ),
    Case(
        "report-of-concern-not-considered-for-a-referral",
        request(to_party=SOC),
        False,
        reasons={"no-consent", "no-necessity-assessment"},
    ),
    Case(
        "consent-beats-report-of-concern-on-a-tie",
        roc(),
        True,
        "consent",
        "c-1",
        {"identity", "concern-text"},
        consents=[
            consent(
                data_categories=["identity", "concern-text"],
                to_parties={"organisation_types": ["socialtjanst-myndighet"]},
                purposes=["orosanmalan"],
            )
        ],
    ),
    # ---------------------------------------------------------------------- necessary disclosure
    Case(
        "necessary-disclosure-without-assessment-is-denied",
        request(legal_basis="necessary-disclosure"),
        False,
        reasons={"no-necessity-assessment"},
        remedies={"recorded-necessity-assessment"},
    ),
    Case(
        "necessary-disclosure-with-assessment-only-its-categories",
        request(requested_categories=["identity", "school-situation", "wellbeing-assessment"]),
        True,
        "necessary-disclosure",
        "na-1",
        {"identity", "school-situation"},
        assessments=[assessment()],
        reasons={"necessity-assessment-applies", "necessity-assessment-categories-not-covered"},
        remedies={"recorded-necessity-assessment"},
    ),
    Case(
        "stale-necessity-assessment",
        request(),
        False,
        assessments=[assessment(decided_at=AT - timedelta(days=31))],
        reasons={"necessity-assessment-stale"},
        remedies={"recorded-necessity-assessment"},
    ),
    Case(
        "necessity-assessment-on-the-last-valid-day",
        request(),
        True,
        "necessary-disclosure",
        "na-1",
        {"identity", "school-situation"},
        assessments=[assessment(decided_at=AT - timedelta(days=30))],
    ),
    Case(
        "necessity-assessment-dated-after-the-share",
        request(),
        False,
        assessments=[assessment(decided_at=AT + timedelta(minutes=1))],
        reasons={"necessity-assessment-in-future"},
    ),
    Case(
        "necessity-assessment-for-another-recipient",
        request(to_party=SOC),
        False,
        assessments=[assessment()],
        reasons={"necessity-assessment-other-recipient"},
    ),
    Case(
        "necessity-assessment-by-another-organisation",
        request(from_party=EHT),
        False,
        assessments=[assessment()],
        reasons={"no-necessity-assessment"},
    ),
    Case(
        "necessity-assessment-without-justification-or-case",
        request(),
        False,
        assessments=[assessment(justification=" ", case_reference="")],
        reasons={"necessity-assessment-incomplete"},
        remedies={"recorded-necessity-assessment"},
    ),
    Case(
        "necessity-never-carries-health-under-the-default-policy",
        request(requested_categories=["health"]),
        False,
        assessments=[assessment(data_categories=["identity", "health"])],
        reasons={"category-not-allowed-for-basis"},
    ),
    Case(
        "consent-preferred-to-necessity-on-a-tie",
        request(),
        True,
        "consent",
        "c-1",
        {"identity", "school-situation"},
        consents=[consent()],
        assessments=[assessment()],
    ),
    Case(
        "necessity-wins-when-the-consent-is-expired",
        request(),
        True,
        "necessary-disclosure",
        "na-1",
        {"identity", "school-situation"},
        consents=[consent(valid_until=AT - timedelta(days=1))],
        assessments=[assessment()],
    ),
    Case(
        "nothing-requested",
        request(requested_categories=[]),
        False,
        consents=[consent()],
        reasons={"no-categories-requested"},
    ),
]


def _decide(case: Case, *, reverse: bool = False) -> Decision:
    consents = list(reversed(case.consents)) if reverse else case.consents
    assessments = list(reversed(case.assessments)) if reverse else case.assessments
    return decide(case.request, consents=consents, assessments=assessments, policy=case.policy)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 35
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_decision(case: Case) -> None:
    decision = _decide(case)
    requested = case.request.requested_categories

    assert decision.allowed is case.allowed
    assert decision.legal_basis == case.basis
    assert decision.basis_reference == case.reference
    assert set(decision.permitted_categories) == case.permitted
    assert set(decision.denied_categories) == requested - case.permitted
    assert list(decision.permitted_categories) == sorted(decision.permitted_categories)
    assert list(decision.denied_categories) == sorted(decision.denied_categories)

    reason_codes = {reason.code for reason in decision.reasons}
    remedy_codes = {remedy.code for remedy in decision.remedies}
    assert case.reasons <= reason_codes, reason_codes
    assert case.remedies <= remedy_codes, remedy_codes
    if case.remedy_mentions:
        assert any(case.remedy_mentions in remedy.en for remedy in decision.remedies)
    if decision.allowed:
        assert decision.reasons[0].code.endswith("applies")
        assert decision.reasons[0].legal_basis == decision.legal_basis
    if decision.allowed and not decision.denied_categories:
        assert decision.remedies == ()
    if not decision.allowed and requested:
        assert decision.reasons[0].code == "no-legal-basis"
        assert decision.remedies, "a denial must say what would make it lawful"

    # Every reason and remedy reads in Swedish and English.
    for item in (*decision.reasons, *decision.remedies):
        assert item.sv.strip() and item.en.strip() and item.sv != item.en
        assert "{" not in item.sv + item.en
    # The same facts in another order give the same decision.
    assert _decide(case, reverse=True) == decision


def test_consent_covering_bup_is_the_remedy_for_a_recipient_outside_the_consent() -> None:
    decision = decide(
        request(),
        consents=[consent(to_parties={"organisation_types": ["socialtjanst-oppenvard"]})],
        assessments=[],
        policy=Policy(),
    )
    remedy = next(r for r in decision.remedies if r.code == "consent-covering-recipient")
    assert "bup" in remedy.en and "bup" in remedy.sv


def test_reasons_never_mention_the_child() -> None:
    for case in CASES:
        decision = _decide(case)
        for item in (*decision.reasons, *decision.remedies):
            assert CHILD not in item.sv + item.en


def test_a_partial_decision_lists_only_remedies_for_what_was_denied() -> None:
    decision = decide(
        request(requested_categories=["identity", "health"]),
        consents=[consent(data_categories=["identity"])],
        assessments=[],
        policy=Policy(),
    )
    assert decision.denied_categories == ("health",)
    for remedy in decision.remedies:
        assert not remedy.categories or "health" in remedy.categories


def test_all_agreed_categories_appear_in_the_vocabulary_list() -> None:
    assert set(Policy().legal_basis_categories["consent"]) == set(ALL)


def test_no_remedy_promises_a_basis_the_policy_never_opens_for_the_categories() -> None:
    """Health never travels on necessary disclosure by the default policy: suggesting an assessment
    "covering: (nothing)" would send the professional down a dead end."""
    policy = Policy()
    assert "health" not in policy.legal_basis_categories["necessary-disclosure"]
    decision = decide(
        request(requested_categories=["health"], purpose="samverkansforfragan"),
        consents=[],
        assessments=[],
        policy=policy,
    )
    assert not decision.allowed
    assert "recorded-necessity-assessment" not in {r.code for r in decision.remedies}
    assert all(r.categories for r in decision.remedies if "{categories}" in REMEDY_TEXTS[r.code][1])
