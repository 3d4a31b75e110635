"""Recording consents: check_consent, consent_state and withdraw_consent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from hub.domain.policy import Policy
from hub.domain.sharing import ConsentAlreadyWithdrawn, check_consent, consent_state, decide, withdraw_consent

from .facts import AT, child, consent, guardian, request


def test_a_good_consent_has_no_problems() -> None:
    assert check_consent(consent(), policy=Policy(), now=AT) == []


@pytest.mark.parametrize(
    ("overrides", "pointer", "code"),
    [
        pytest.param({"valid_until": AT - timedelta(days=30)}, "/valid_until", "consent-period-empty", id="empty"),
        pytest.param(
            {"valid_until": AT + timedelta(days=336)},
            "/valid_until",
            "consent-period-too-long",
            id="too-long",
        ),
        pytest.param(
            {"valid_from": AT - timedelta(days=60), "valid_until": AT - timedelta(days=1)},
            "/valid_until",
            "consent-period-ended",
            id="already-ended",
        ),
        pytest.param({"guardian_count": 0}, "/guardian_count", "guardian-count-out-of-range", id="no-custody"),
        pytest.param({"guardian_count": 3}, "/guardian_count", "guardian-count-out-of-range", id="three"),
        pytest.param({"grantors": [child()]}, "/grantors", "no-guardian-grantor", id="only-the-child"),
        pytest.param({"grantors": [guardian(agreed=False)]}, "/grantors", "no-guardian-grantor", id="guardian-refused"),
        pytest.param({"guardian_count": 1}, "/grantors", "more-guardians-than-custody", id="two-grantors-sole-custody"),
        pytest.param(
            {"grantors": [guardian("g"), guardian("g")]},
            "/grantors/1/reference",
            "duplicate-grantor",
            id="duplicate",
        ),
        pytest.param(
            {"grantors": [guardian("g1"), guardian("g2", categories=["health"])]},
            "/grantors/1/categories",
            "grantor-categories-outside-consent",
            id="grantor-outside",
        ),
        pytest.param({"data_categories": []}, "/data_categories", "required-field-empty", id="no-categories"),
        pytest.param({"from_parties": {}}, "/from_parties", "required-field-empty", id="no-senders"),
        pytest.param({"to_parties": {}}, "/to_parties", "required-field-empty", id="no-recipients"),
        pytest.param({"purposes": []}, "/purposes", "required-field-empty", id="no-purposes"),
        pytest.param({"evidence_reference": " "}, "/evidence_reference", "required-field-empty", id="no-evidence"),
        pytest.param(
            {"information_given": {"language": "", "form": "oral"}},
            "/information_given/language",
            "required-field-empty",
            id="no-language",
        ),
        pytest.param({"withdrawn_at": AT}, "/withdrawn_at", "withdrawal-incomplete", id="withdrawal-half"),
    ],
)
def test_problems_name_the_field(overrides: dict[str, Any], pointer: str, code: str) -> None:
    problems = check_consent(consent(**overrides), policy=Policy(), now=AT)
    assert (pointer, code) in {(p.pointer, p.code) for p in problems}
    for problem in problems:
        assert problem.sv and problem.en and problem.sv != problem.en


def test_policy_maximum_is_applied_when_recording() -> None:
    long = consent(valid_until=AT + timedelta(days=400))
    assert [p.code for p in check_consent(long, policy=Policy(), now=AT)] == ["consent-period-too-long"]
    assert check_consent(long, policy=Policy(max_consent_duration_days=500), now=AT) == []


@pytest.mark.parametrize(
    ("at", "withdrawn", "state"),
    [
        (AT, None, "active"),
        (AT - timedelta(days=30), None, "active"),
        (AT - timedelta(days=31), None, "not-yet-valid"),
        (AT + timedelta(days=270), None, "expired"),
        (AT, AT, "withdrawn"),
        (AT, AT + timedelta(seconds=1), "active"),
        (AT + timedelta(days=300), AT, "withdrawn"),
    ],
)
def test_consent_state(at: Any, withdrawn: Any, state: str) -> None:
    extra = {} if withdrawn is None else {"withdrawn_at": withdrawn, "withdrawn_by": "g", "withdrawal_reason": "r"}
    assert consent_state(consent(**extra), at) == state


def test_withdrawal_is_effective_for_every_later_decision() -> None:
    original = consent()
    withdrawn = withdraw_consent(original, at=AT, by="guardian-2", reason="changed their mind")
    assert original.withdrawn_at is None  # immutable: a new value
    assert (withdrawn.withdrawn_at, withdrawn.withdrawn_by, withdrawn.withdrawal_reason) == (
        AT,
        "guardian-2",
        "changed their mind",
    )
    assert check_consent(withdrawn, policy=Policy(), now=AT) == []
    before = decide(request(at=AT - timedelta(seconds=1)), consents=[withdrawn], assessments=[], policy=Policy())
    after = decide(request(at=AT), consents=[withdrawn], assessments=[], policy=Policy())
    assert before.allowed and not after.allowed
    with pytest.raises(ConsentAlreadyWithdrawn):
        withdraw_consent(withdrawn, at=AT, by="guardian-1", reason="again")


def test_derived_agreement_follows_copies() -> None:
    original = consent()
    assert len(original.agreement.guardians) == 2
    copied = original.model_copy(update={"grantors": (original.grantors[0],)})
    assert len(copied.agreement.guardians) == 1
