"""Checking a consent before it is recorded, and withdrawing one."""

from __future__ import annotations

from datetime import datetime, timedelta

from hub.domain.policy import Policy
from hub.domain.sharing.facts import Consent, ConsentAlreadyWithdrawn, ConsentProblem
from hub.domain.sharing.texts import REASON_TEXTS

# ------------------------------------------------------------------------------ recording and state


def _problem(pointer: str, code: str, **values: object) -> ConsentProblem:
    sv, en = REASON_TEXTS[code]
    return ConsentProblem(pointer, code, sv.format_map(values), en.format_map(values))


def check_consent(consent: Consent, *, policy: Policy, now: datetime) -> list[ConsentProblem]:
    """Problems that should stop ``consent`` from being recorded at ``now`` (empty: it may be recorded).

    Checks: a period that ends after it starts, is no longer than the policy maximum and has not already
    ended; one or two guardians with custody; at least one agreeing guardian grantor and no more guardian
    grantors than guardians; unique grantor references; grantor categories inside the consent's; non-empty
    categories, parties, purposes, evidence reference and information given; withdrawal fields all set or
    all empty. Vocabulary codes are checked by services."""
    problems: list[ConsentProblem] = []
    if consent.valid_until <= consent.valid_from:
        problems.append(_problem("/valid_until", "consent-period-empty"))
    elif consent.valid_until - consent.valid_from > timedelta(days=policy.max_consent_duration_days):
        problems.append(_problem("/valid_until", "consent-period-too-long", max_days=policy.max_consent_duration_days))
    if consent.valid_until <= now:
        problems.append(_problem("/valid_until", "consent-period-ended"))
    if not 1 <= consent.guardian_count <= 2:
        problems.append(_problem("/guardian_count", "guardian-count-out-of-range"))
    guardian_refs = {g.reference for g in consent.grantors if g.role == "guardian"}
    if not any(g.role == "guardian" and g.agreed for g in consent.grantors):
        problems.append(_problem("/grantors", "no-guardian-grantor"))
    if len(guardian_refs) > max(consent.guardian_count, 0):
        problems.append(_problem("/grantors", "more-guardians-than-custody"))
    seen: set[tuple[str, str]] = set()
    for index, grantor in enumerate(consent.grantors):
        key = (grantor.role, grantor.reference)
        if key in seen:
            problems.append(_problem(f"/grantors/{index}/reference", "duplicate-grantor"))
        seen.add(key)
        if grantor.categories is not None and not grantor.categories <= consent.data_categories:
            problems.append(_problem(f"/grantors/{index}/categories", "grantor-categories-outside-consent"))
    for pointer, empty in (
        ("/data_categories", not consent.data_categories),
        ("/from_parties", consent.from_parties.is_empty()),
        ("/to_parties", consent.to_parties.is_empty()),
        ("/purposes", not consent.purposes),
        ("/evidence_reference", not consent.evidence_reference.strip()),
        ("/information_given/language", not consent.information_given.language.strip()),
        ("/information_given/form", not consent.information_given.form.strip()),
    ):
        if empty:
            problems.append(_problem(pointer, "required-field-empty"))
    withdrawal = (consent.withdrawn_at, consent.withdrawn_by, consent.withdrawal_reason)
    if any(v is not None for v in withdrawal) and any(v is None for v in withdrawal):
        problems.append(_problem("/withdrawn_at", "withdrawal-incomplete"))
    return problems


def withdraw_consent(consent: Consent, *, at: datetime, by: str, reason: str) -> Consent:
    """A copy of ``consent`` withdrawn at ``at`` by ``by`` (a role or reference, not a name) for
    ``reason``; effective for every decision at or after ``at``. Raises :class:`ConsentAlreadyWithdrawn`."""
    if consent.withdrawn_at is not None:
        raise ConsentAlreadyWithdrawn(f"consent {consent.id} is already withdrawn")
    return Consent.model_validate(
        {**consent.model_dump(), "withdrawn_at": at, "withdrawn_by": by, "withdrawal_reason": reason}
    )
