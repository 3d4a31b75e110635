"""The policy model and its file (hub.domain.policy, hub.policy)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from hub.domain.policy import Policy
from hub.policy import PolicyFileError, load_policy

AGREED = {
    "data-category": {
        "identity",
        "guardians-contact",
        "school-situation",
        "health",
        "social-services",
        "wellbeing-assessment",
        "concern-text",
        "child-plan",
    },
    "organisation-type": {
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
    "referral-kind": {
        "samverkansforfragan",
        "remiss",
        "begaran-om-insats",
        "orosanmalan",
        "sip-kallelse",
        "overlamning",
    },
}


def test_shipped_default_equals_the_model_defaults() -> None:
    assert load_policy(None) == Policy()


def test_defaults() -> None:
    policy = load_policy()
    assert policy.all_guardians_must_consent is True
    assert policy.child_consent_age_for("health") == 15
    assert policy.max_consent_duration_days == 365
    assert policy.report_of_concern_recipient_types == {"socialtjanst-myndighet"}
    assert policy.necessity_assessment_max_age_days == 30
    assert policy.categories_for("consent") == AGREED["data-category"]
    assert "health" not in policy.categories_for("report-of-concern")
    assert "health" not in policy.categories_for("necessary-disclosure")


def test_default_uses_only_agreed_vocabulary_codes() -> None:
    for system, codes in Policy().referenced_codes().items():
        assert codes <= AGREED[system], system


def test_a_policy_file_overrides(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    text = (Path(__file__).parents[2] / "src/hub/policy/default.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace("  default: 15", "  default: 15\n  health: 13"), encoding="utf-8")
    policy = load_policy(path)
    assert policy.child_consent_age_for("health") == 13
    assert policy.child_consent_age_for("identity") == 15
    assert policy.youngest_child_consent_age == 13


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("child_consent_age: {health: 13}\n", "child_consent_age"),
        ("max_consent_duration_days: 0\n", "max_consent_duration_days"),
        ("unknown_field: 1\n", "unknown_field"),
        ("legal_basis_categories: {consent: [identity]}\n", "legal_basis_categories"),
        ("legal_basis_categories: {gossip: [identity]}\n", "gossip"),
        ("- a list\n", "mapping"),
        ("key: [unclosed\n", "YAML"),
    ],
)
def test_invalid_policy_files_are_rejected_naming_the_problem(tmp_path: Path, text: str, mentions: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyFileError) as error:
        load_policy(path)
    assert mentions in str(error.value)
    assert str(path) in str(error.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError):
        load_policy(tmp_path / "missing.yaml")


def test_derived_values_follow_copies() -> None:
    policy = Policy()
    assert policy.max_consent_duration.days == 365
    assert policy.model_copy(update={"max_consent_duration_days": 10}).max_consent_duration.days == 10


def _dated(*rules: dict[str, object]) -> Policy:
    return Policy.model_validate({"dated_rules": [{"source": "beslut", **r} for r in rules]})


def test_a_dated_rule_applies_on_its_days_only() -> None:
    policy = _dated(
        {"valid_from": "2025-07-01", "valid_until": "2026-01-01", "rules": {"max_consent_duration_days": 180}}
    )
    assert policy.in_force(date(2025, 6, 30)) is policy
    assert policy.in_force(date(2025, 7, 1)).max_consent_duration_days == 180
    assert policy.in_force(date(2025, 12, 31)) is policy.in_force(date(2025, 7, 1))  # built once
    assert policy.in_force(date(2026, 1, 1)).max_consent_duration_days == 365


@pytest.mark.parametrize(
    ("rules", "mentions"),
    [
        ([{"valid_from": "2025-07-01", "rules": {"dated_rules": []}}], "not a dated policy field"),
        ([{"valid_from": "2025-07-01", "rules": {"shoe_size": 3}}], "not a dated policy field"),
        (
            [{"valid_from": "2025-07-01", "valid_until": "2025-07-01", "rules": {"max_consent_duration_days": 9}}],
            "after",
        ),
        ([{"valid_from": "2025-07-01", "rules": {"max_consent_duration_days": 0}}], "greater than or equal"),
        (
            [
                {"valid_from": "2025-01-01", "rules": {"max_consent_duration_days": 100}},
                {"valid_from": "2025-07-01", "rules": {"max_consent_duration_days": 200}},
            ],
            "over the same days",
        ),
    ],
)
def test_invalid_dated_rules_are_rejected(rules: list[dict[str, object]], mentions: str) -> None:
    with pytest.raises(ValueError, match=mentions):
        _dated(*rules)


def test_a_dated_rules_codes_are_checked_against_the_vocabulary() -> None:
    policy = _dated({"valid_from": "2025-07-01", "rules": {"report_of_concern_recipient_types": ["pizzeria"]}})
    assert "pizzeria" in policy.referenced_codes()["organisation-type"]
