"""What each legal basis permits: a consent, the duty to report concern, a necessity assessment.

Each basis has one function that returns the categories it permits. Without an :class:`Evaluation` it
screens: it stops at the first failure and builds no text (the hot path). With one it runs every check
and records reasons and remedies. One function for both keeps screening and explanation in agreement.
"""

from __future__ import annotations

from hub.domain.policy import Policy
from hub.domain.sharing.evaluation import NOTHING, Evaluation
from hub.domain.sharing.evaluation import sorted_categories as _cats
from hub.domain.sharing.facts import Consent, NecessityAssessment, ShareRequest


def consent_permits(
    request: ShareRequest, consent: Consent, policy: Policy, requested: frozenset[str], ev: Evaluation | None
) -> frozenset[str]:
    """The categories ``consent`` permits: none unless it is valid for this share, else the golden rule
    narrowed by what the guardians and the child agreed to."""
    valid = _consent_valid(request, consent, policy, ev)
    if not valid and ev is None:
        return NOTHING
    candidate = _consent_categories(consent, policy, requested, ev)
    if not candidate and ev is None:
        return NOTHING
    candidate, guardians_ok = _guardian_cover(consent, policy, candidate, ev)
    if not guardians_ok:
        if ev is None:
            return NOTHING
        valid = False
    candidate = _child_cover(request, consent, policy, candidate, ev)
    return candidate if valid else NOTHING


def _consent_valid(request: ShareRequest, consent: Consent, policy: Policy, ev: Evaluation | None) -> bool:
    """Whether the consent is in force and covers this sender, recipient and purpose; screening stops at
    the first failure, an explanation notes every one."""
    at = request.at
    valid = True
    ref = consent.id
    withdrawn_at = consent.withdrawn_at
    if withdrawn_at is not None and withdrawn_at <= at:
        if ev is None:
            return False
        valid = False
        ev.note("consent-withdrawn", withdrawn_at=withdrawn_at)
        ev.remedy("new-consent", ref=ref)
    if at < consent.valid_from:
        if ev is None:
            return False
        valid = False
        ev.note("consent-not-yet-valid", valid_from=consent.valid_from)
        ev.remedy("wait-for-consent-start", ref=ref, valid_from=consent.valid_from)
    elif at >= consent.valid_until:
        if ev is None:
            return False
        valid = False
        ev.note("consent-expired", valid_until=consent.valid_until)
        ev.remedy("renew-consent", ref=ref)
    if consent.valid_until - consent.valid_from > policy.max_consent_duration:
        if ev is None:
            return False
        valid = False
        ev.note("consent-exceeds-max-duration", max_days=policy.max_consent_duration_days)
        ev.remedy("consent-within-max-duration", max_days=policy.max_consent_duration_days)
    for side, party, scope in (
        ("sender", request.from_party, consent.from_parties),
        ("recipient", request.to_party, consent.to_parties),
    ):
        if party.organisation_id not in scope.organisation_ids and (
            party.organisation_type not in scope.organisation_types
        ):
            if ev is None:
                return False
            valid = False
            ev.note(f"consent-{side}-not-covered", (), **{side: party.label()})
            ev.remedy(f"consent-covering-{side}", (), **{side: party.label()})
    if request.purpose not in consent.purposes:
        if ev is None:
            return False
        valid = False
        ev.note("consent-purpose-not-covered", purpose=request.purpose)
        ev.remedy("consent-covering-purpose", purpose=request.purpose)
    return valid


def _consent_categories(
    consent: Consent, policy: Policy, requested: frozenset[str], ev: Evaluation | None
) -> frozenset[str]:
    """The golden rule, step by step: what the consent names, then what the policy lets consent carry
    (what every required grantor agreed to follows in :func:`_guardian_cover` and :func:`_child_cover`)."""
    consent_categories = consent.data_categories
    candidate = requested & consent_categories
    if ev is not None and len(candidate) < len(requested):
        cats = _cats(requested - consent_categories)
        ev.note("consent-categories-not-covered", cats)
        ev.remedy("consent-covering-categories", cats)
    policy_allowed = policy.legal_basis_categories["consent"]
    if not candidate <= policy_allowed:
        if ev is not None:
            ev.note("category-not-allowed-for-basis", _cats(candidate - policy_allowed))
        candidate = candidate & policy_allowed
    return candidate


def _guardian_cover(
    consent: Consent, policy: Policy, candidate: frozenset[str], ev: Evaluation | None
) -> tuple[frozenset[str], bool]:
    """``candidate`` narrowed to what every required guardian agreed to, and False when too few did."""
    sets = consent.agreement.guardians
    required = consent.guardian_count if policy.all_guardians_must_consent else 1
    required = max(required, 1)
    if len(sets) < required:
        if ev is not None:
            ev.note("consent-guardian-missing", required=required, present=len(sets))
            if required == 2 and len(sets) == 1:
                ev.remedy("consent-from-second-guardian")
            else:
                ev.remedy("consent-from-guardian", required=required)
        return candidate, False
    if required == 1:
        covered = NOTHING.union(*sets)
    elif len(sets) == required:
        covered = NOTHING.union(sets[0]).intersection(*sets[1:])
    else:
        covered = frozenset(c for c in candidate if sum(c in s for s in sets) >= required)
    if not candidate <= covered:
        if ev is not None:
            cats = _cats(candidate - covered)
            ev.note("consent-guardian-categories", cats)
            ev.remedy("consent-covering-categories", cats)
        candidate = candidate & covered
    return candidate, True


def _child_cover(
    request: ShareRequest, consent: Consent, policy: Policy, candidate: frozenset[str], ev: Evaluation | None
) -> frozenset[str]:
    """``candidate`` less what a child old enough to be asked has not agreed to."""
    age = request.child_age
    need_child = candidate - consent.agreement.child
    if need_child and age >= policy.youngest_child_consent_age:
        missing = frozenset(c for c in need_child if age >= policy.child_consent_age_for(c))
        if missing:
            if ev is not None:
                cats = _cats(missing)
                ev.note("consent-child-missing", cats, age=age)
                ev.remedy("child-consent", cats)
            candidate = candidate - missing
    return candidate


def report_permits(
    request: ShareRequest, policy: Policy, requested: frozenset[str], ev: Evaluation | None
) -> frozenset[str]:
    valid = True
    if request.purpose != policy.report_of_concern_purpose:
        if ev is None:
            return NOTHING
        valid = False
        ev.note("report-purpose-mismatch", purpose=request.purpose, expected=policy.report_of_concern_purpose)
        ev.remedy("other-legal-basis", expected=policy.report_of_concern_purpose)
    allowed_types = policy.report_of_concern_recipient_types
    if request.to_party.organisation_type not in allowed_types:
        if ev is None:
            return NOTHING
        valid = False
        types = ", ".join(sorted(allowed_types))
        ev.note("report-recipient-type-not-allowed", types=types, recipient=request.to_party.label())
        ev.remedy("report-to-allowed-recipient-type", types=types)
    policy_allowed = policy.legal_basis_categories["report-of-concern"]
    permitted = requested & policy_allowed
    if ev is not None and len(permitted) < len(requested):
        ev.note("category-not-allowed-for-basis", _cats(requested - policy_allowed))
    return permitted if valid else NOTHING


def assessment_permits(
    request: ShareRequest,
    assessment: NecessityAssessment,
    policy: Policy,
    requested: frozenset[str],
    ev: Evaluation | None,
) -> frozenset[str]:
    if assessment.organisation_id != request.from_party.organisation_id:
        return NOTHING  # another organisation's assessment: never the sender's basis, never explained
    valid = True
    if assessment.recipient_organisation_id != request.to_party.organisation_id:
        if ev is None:
            return NOTHING
        valid = False
        ev.note("necessity-assessment-other-recipient")
    if assessment.decided_at > request.at:
        if ev is None:
            return NOTHING
        valid = False
        ev.note("necessity-assessment-in-future", decided_at=assessment.decided_at)
    elif request.at - assessment.decided_at > policy.necessity_assessment_max_age:
        if ev is None:
            return NOTHING
        valid = False
        max_age = policy.necessity_assessment_max_age_days
        ev.note("necessity-assessment-stale", decided_at=assessment.decided_at, max_age_days=max_age)
    missing = [
        name
        for name, value in (
            ("decided_by.person", assessment.decided_by.person),
            ("decided_by.role", assessment.decided_by.role),
            ("justification", assessment.justification),
            ("case_reference", assessment.case_reference),
        )
        if not value.strip()
    ]
    if missing:
        if ev is None:
            return NOTHING
        valid = False
        ev.note("necessity-assessment-incomplete", fields=", ".join(missing))
    policy_allowed = policy.legal_basis_categories["necessary-disclosure"]
    candidate = requested & assessment.data_categories
    if ev is not None:
        if len(candidate) < len(requested):
            ev.note("necessity-assessment-categories-not-covered", _cats(requested - assessment.data_categories))
        if not candidate <= policy_allowed:
            ev.note("category-not-allowed-for-basis", _cats(candidate - policy_allowed))
        if not valid or len(candidate) < len(requested):
            ev.remedy("recorded-necessity-assessment", _cats(requested & policy_allowed))
    candidate = candidate & policy_allowed
    return candidate if valid else NOTHING
