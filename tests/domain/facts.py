"""Builders for lawful-sharing facts in tests: one realistic base case, overridden per test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hub.domain.policy import Policy
from hub.domain.sharing import Consent, NecessityAssessment, Party, ShareRequest

AT = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
CHILD = "k1:" + "c" * 64
OTHER_CHILD = "k1:" + "d" * 64

SCHOOL = Party(organisation_id="kumla-grundskola-1", organisation_type="grundskola")
EHT = Party(organisation_id="kumla-elevhalsa", organisation_type="elevhalsa")
VC = Party(organisation_id="region-vc-kumla", organisation_type="vardcentral")
BUP = Party(organisation_id="region-bup-orebro", organisation_type="bup")
SOC = Party(organisation_id="kumla-ifo", organisation_type="socialtjanst-myndighet")
SOC_OPEN = Party(organisation_id="kumla-oppenvard", organisation_type="socialtjanst-oppenvard")

BASE_CATEGORIES = ["identity", "guardians-contact", "school-situation", "wellbeing-assessment"]


def guardian(ref: str = "guardian-1", **extra: Any) -> dict[str, Any]:
    return {"role": "guardian", "reference": ref, **extra}


def child(**extra: Any) -> dict[str, Any]:
    return {"role": "child", "reference": "child", **extra}


def consent(**overrides: Any) -> Consent:
    """A consent from both guardians (joint custody): school/EHT → BUP, for a referral (remiss),
    identity + guardians' contact + school situation + wellbeing assessment, 30 days old, 300 days long."""
    data: dict[str, Any] = {
        "id": "c-1",
        "child_pseudonym": CHILD,
        "recording_organisation_id": SCHOOL.organisation_id,
        "grantors": [guardian("guardian-1"), guardian("guardian-2")],
        "guardian_count": 2,
        "data_categories": BASE_CATEGORIES,
        "from_parties": {"organisation_types": ["grundskola", "elevhalsa"]},
        "to_parties": {"organisation_types": ["bup"]},
        "purposes": ["remiss"],
        "valid_from": AT - timedelta(days=30),
        "valid_until": AT + timedelta(days=270),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "journal:doc-4711",
    }
    data.update(overrides)
    return Consent.model_validate(data)


def assessment(**overrides: Any) -> NecessityAssessment:
    """A fresh, complete necessity assessment by the school, for BUP, on identity + school situation."""
    data: dict[str, Any] = {
        "id": "na-1",
        "child_pseudonym": CHILD,
        "organisation_id": SCHOOL.organisation_id,
        "recipient_organisation_id": BUP.organisation_id,
        "decided_by": {"person": "hsa:SE2321000016-rektor1", "role": "rektor"},
        "justification": "Needed to plan the school's own support measures with BUP's input.",
        "case_reference": "KUM-BUN-2025-117",
        "data_categories": ["identity", "school-situation"],
        "decided_at": AT - timedelta(days=2),
    }
    data.update(overrides)
    return NecessityAssessment.model_validate(data)


def request(**overrides: Any) -> ShareRequest:
    """School → BUP, a 10-year-old, a referral (remiss) of identity + school situation, at AT."""
    data: dict[str, Any] = {
        "from_party": SCHOOL,
        "to_party": BUP,
        "child_pseudonym": CHILD,
        "child_age": 10,
        "purpose": "remiss",
        "requested_categories": ["identity", "school-situation"],
        "at": AT,
    }
    data.update(overrides)
    return ShareRequest.model_validate(data)


def policy(**overrides: Any) -> Policy:
    return Policy.model_validate({**Policy().model_dump(), **overrides})
