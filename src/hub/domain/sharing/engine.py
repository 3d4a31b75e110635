"""The decision engine: which legal basis permits which categories, and why not."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta

from hub.domain.policy import LegalBasis, Policy, swedish_day
from hub.domain.sharing.bases import assessment_permits, consent_permits, report_permits
from hub.domain.sharing.evaluation import NOTHING, Evaluation, make_reason, make_remedy, unique_remedies
from hub.domain.sharing.evaluation import sorted_categories as _cats
from hub.domain.sharing.facts import (
    Consent,
    ConsentRefusal,
    ConsentState,
    Decision,
    NecessityAssessment,
    Reason,
    Remedy,
    ShareRequest,
)
from hub.domain.sharing.onward import never_onward


def consent_state(consent: Consent, at: datetime) -> ConsentState:
    """The consent's state at ``at``: ``withdrawn`` (withdrawn at or before ``at``), ``not-yet-valid``
    (before ``valid_from``), ``expired`` (at or after ``valid_until``) or ``active``."""
    if consent.withdrawn_at is not None and consent.withdrawn_at <= at:
        return "withdrawn"
    if at < consent.valid_from:
        return "not-yet-valid"
    if at >= consent.valid_until:
        return "expired"
    return "active"


_Fact = Consent | NecessityAssessment | None
# (basis rank, reference, the fact: a consent, an assessment or None, whether the sender may see it)
_Candidate = tuple[int, str, _Fact, bool]
_RANKED_BASES: tuple[LegalBasis, ...] = ("consent", "report-of-concern", "necessary-disclosure")


def _permits(
    candidate: _Candidate,
    request: ShareRequest,
    policy: Policy,
    requested: frozenset[str],
    ev: Evaluation | None,
) -> frozenset[str]:
    fact = candidate[2]
    if isinstance(fact, Consent):
        return consent_permits(request, fact, policy, requested, ev)
    if isinstance(fact, NecessityAssessment):
        return assessment_permits(request, fact, policy, requested, ev)
    return report_permits(request, policy, requested, ev)


def _explain(candidate: _Candidate, request: ShareRequest, policy: Policy, requested: frozenset[str]) -> Evaluation:
    rank, ref, _, _ = candidate
    ev = Evaluation(_RANKED_BASES[rank], ref or None)
    ev.permitted = _permits(candidate, request, policy, requested, ev)
    if ev.permitted:
        ev.reasons.insert(0, _success_reason(candidate, ev.permitted))
    return ev


def _success_reason(candidate: _Candidate, permitted: frozenset[str]) -> Reason:
    _, ref, fact, visible = candidate
    cats = _cats(permitted)
    if isinstance(fact, Consent):
        if not visible:
            return make_reason("consent-of-another-organisation-applies", "consent", None, cats)
        return make_reason("consent-applies", "consent", ref, cats)
    if isinstance(fact, NecessityAssessment):
        # No free text of the assessment (role, case reference): explanations are stored in plain.
        return make_reason("necessity-assessment-applies", "necessary-disclosure", ref, cats)
    return make_reason("report-of-concern-applies", "report-of-concern", None, cats)


def _explain_all(
    candidates: list[_Candidate], request: ShareRequest, policy: Policy, requested: frozenset[str]
) -> list[Evaluation]:
    """Every candidate the sender may see explained, in tie-break order, with a placeholder for a basis
    that was considered but has no facts the sender may see (no consent, no assessment). Invisible
    candidates leave no trace: the explanation is the same as if they did not exist."""
    hint, ref = request.legal_basis, request.basis_reference
    candidates = [c for c in candidates if c[3]]
    evaluations = [_explain(c, request, policy, requested) for c in sorted(candidates, key=lambda c: c[:2])]
    if hint in (None, "consent") and not any(c[0] == 0 for c in candidates):
        ev = Evaluation("consent", ref)
        ev.note("consent-not-found" if ref else "no-consent")
        ev.remedy(
            "record-consent",
            _cats(requested & policy.legal_basis_categories["consent"]),
            purpose=request.purpose,
        )
        evaluations.insert(0, ev)
    if hint in (None, "necessary-disclosure") and not any(c[0] == 2 for c in candidates):
        ev = Evaluation("necessary-disclosure", ref)
        ev.note("necessity-assessment-not-found" if ref else "no-necessity-assessment")
        ev.remedy(
            "recorded-necessity-assessment",
            _cats(requested & policy.legal_basis_categories["necessary-disclosure"]),
        )
        evaluations.append(ev)
    return evaluations


def _better(
    candidate: _Candidate, permitted: frozenset[str], best: _Candidate | None, best_permitted: frozenset[str]
) -> bool:
    """Whether ``candidate`` beats ``best``: more categories, or as many and earlier in tie-break order
    (basis rank, then a fact the sender may see, then the lowest reference)."""
    if best is None or len(permitted) > len(best_permitted):
        return True
    return len(permitted) == len(best_permitted) and _order(candidate) < _order(best)


def _order(candidate: _Candidate) -> tuple[int, bool, str]:
    return candidate[0], not candidate[3], candidate[1]


def decide(
    request: ShareRequest,
    *,
    consents: Iterable[Consent],
    assessments: Iterable[NecessityAssessment],
    policy: Policy,
    refusals: Iterable[ConsentRefusal] = (),
) -> Decision:
    """Decide whether a proposed share is lawful under ``policy``, given the facts.

    Every candidate basis is evaluated (only the one invoked by ``request.legal_basis``, and only the
    consent or assessment named by ``request.basis_reference``, if given): the consents and necessity
    assessments about this child, and the duty to report concern when the purpose is the policy's
    report-of-concern purpose or the caller invokes it. The candidate permitting the most requested
    categories wins; ties go to consent, then report of concern, then necessary disclosure, then a
    consent the sender may see, then the lowest id. Facts about other children are ignored. One basis
    carries the whole share: categories are never combined across bases.

    The explanation speaks to the sender (``request.from_party``) and describes only the bases it may
    see: consents it recorded or that name it by id (:meth:`Consent.visible_to`), its own necessity
    assessments, and the duty to report concern (a rule of the policy, not a record). Other consents
    still count: one may allow the share, and then the decision says so without its id or content
    (``basis_visible`` false). One that does not allow leaves the decision exactly as if it did not
    exist, so the explanation is no oracle about other organisations' consents.

    If some but not all requested categories are permitted, the decision is allowed with the permitted
    subset and the rest denied, explained and remedied. A fully allowed decision carries the chosen
    basis' reasons only; a denied or partial one carries the reasons of every candidate (the chosen
    one first) and the remedies of all of them.

    The policy applies as it is in force on the Swedish calendar day of ``request.at``
    (:meth:`Policy.in_force`): a county's dated rule takes effect on its day, for shares made that day.

    A category of :data:`hub.domain.concern.NEVER_ONWARD` (the answer to a report of concern) is denied on
    every basis, whatever the facts and the policy say (``category-never-shared-onward``): the hub alone
    carries it, to the reporter (:func:`hub.domain.sharing.onward.never_onward`).

    ``refusals``: the sender's refused consent requests. While one for this child and purpose stands, a
    decision that is not fully allowed says so and its remedies point to other bases, never to asking
    for consent again (:func:`_after_refusal`).

    ``request.child_identity_protected``: the policy's protected-identity rule
    (:class:`~hub.domain.protected_identity.ProtectedIdentityRule`) withholds its categories from this
    recipient: of what a basis allows, they are denied with the reason ``identity-protected`` and the remedy
    ``recipient-reaches-sender``. What no basis allows is denied for its own reasons, and the protection is
    not mentioned: only a sender that could lawfully have disclosed the identity learns that it is
    protected — anyone else holding a personal identity number gets the same answer for a protected child
    as for any other (no oracle).
    """
    return never_onward(  # the answer to a report of concern never travels onward, on any basis
        request,
        lambda asked: _decide(asked, consents=consents, assessments=assessments, policy=policy, refusals=refusals),
    )


def _decide(
    request: ShareRequest,
    *,
    consents: Iterable[Consent],
    assessments: Iterable[NecessityAssessment],
    policy: Policy,
    refusals: Iterable[ConsentRefusal],
) -> Decision:
    policy = policy.in_force(swedish_day(request.at))  # the rules in force on the day of the share
    if not request.requested_categories:
        return Decision(False, None, None, (), (), (make_reason("no-categories-requested", None, None),))
    decision = _decide_on(request, request.requested_categories, consents, assessments, policy, refusals)
    if not request.child_identity_protected:
        return decision
    to = request.to_party
    withheld = frozenset(decision.permitted_categories) & policy.protected_identity.withheld_from(
        to.organisation_id, to.organisation_type
    )
    return _protected(decision, request, withheld) if withheld else decision


def _decide_on(
    request: ShareRequest,
    requested: frozenset[str],
    consents: Iterable[Consent],
    assessments: Iterable[NecessityAssessment],
    policy: Policy,
    refusals: Iterable[ConsentRefusal],
) -> Decision:
    """:func:`decide` for ``requested``, before the child's protected identity is applied."""
    candidates, best, best_permitted = _screen(request, consents, assessments, policy, requested)
    if best is not None and len(best_permitted) == len(requested):
        # Fully allowed: the chosen basis alone explains it, and its only reason is that it applies.
        return Decision(
            True,
            _RANKED_BASES[best[0]],
            best[1] or None,
            _cats(best_permitted),
            (),
            (_success_reason(best, best_permitted),),
            basis_visible=best[3],
        )
    decision = _explained_decision(candidates, best, best_permitted, request, policy, requested)
    return _after_refusal(decision, request, refusals, policy)


def _protected(decision: Decision, request: ShareRequest, withheld: frozenset[str]) -> Decision:
    """``decision`` with the permitted categories the child's protected identity withholds from this
    recipient denied, the reason recorded and the remedy saying how the recipient reaches the sender
    instead. The reason does not say where the mark came from (this sender or an earlier message): the
    answer is the same. When nothing permitted remains, the basis explains nothing: the decision is a
    refusal, and its first reason (the basis's) gives way to the protection's."""
    cats = _cats(withheld)
    reason = make_reason("identity-protected", None, None, cats, recipient=request.to_party.label())
    remedy = make_remedy("recipient-reaches-sender", cats)
    denied = _cats(set(decision.denied_categories) | withheld)
    remedies = (*(r for r in decision.remedies if r.code != remedy.code), remedy)
    permitted = tuple(c for c in decision.permitted_categories if c not in withheld)
    if permitted:
        return dataclasses.replace(
            decision,
            permitted_categories=permitted,
            denied_categories=denied,
            reasons=(*decision.reasons, reason),
            remedies=remedies,
        )
    return Decision(False, None, None, (), denied, (reason, *decision.reasons[1:]), remedies)


# Remedies that ask the guardians or the child for a consent (again): not offered while a refusal stands.
_ASKING_FOR_CONSENT = frozenset(
    {
        "record-consent",
        "new-consent",
        "renew-consent",
        "consent-within-max-duration",
        "consent-covering-sender",
        "consent-covering-recipient",
        "consent-covering-purpose",
        "consent-covering-categories",
        "consent-from-second-guardian",
        "consent-from-guardian",
        "child-consent",
    }
)


def _after_refusal(
    decision: Decision, request: ShareRequest, refusals: Iterable[ConsentRefusal], policy: Policy
) -> Decision:
    """``decision`` as it stands after the sender's latest refusal for this child and purpose: the refusal
    as a reason, the remedies that would ask for consent again dropped, and one pointing to other bases."""
    stands = timedelta(days=policy.consent_refusal_stands_days)
    standing = [
        r
        for r in refusals
        if r.child_pseudonym == request.child_pseudonym
        and r.organisation_id == request.from_party.organisation_id
        and request.purpose in r.purposes
        and r.refused_at <= request.at < r.refused_at + stands
    ]
    if not standing:
        return decision
    latest = max(standing, key=lambda r: r.refused_at)
    ask_again_from = swedish_day(latest.refused_at + stands).isoformat()
    reason = make_reason("consent-refused", "consent", None, purpose=request.purpose, refused_at=latest.refused_at)
    remedies: tuple[Remedy, ...] = tuple(r for r in decision.remedies if r.code not in _ASKING_FOR_CONSENT)
    remedies = (*remedies, make_remedy("basis-other-than-consent", ask_again_from=ask_again_from))
    return dataclasses.replace(decision, reasons=(*decision.reasons, reason), remedies=remedies)


def _screen(
    request: ShareRequest,
    consents: Iterable[Consent],
    assessments: Iterable[NecessityAssessment],
    policy: Policy,
    requested: frozenset[str],
) -> tuple[list[_Candidate], _Candidate | None, frozenset[str]]:
    """Every candidate basis for this child (narrowed by the caller's hint and reference), screened in one
    pass that builds no text, with the best in tie-break order and what it permits."""
    hint, ref, child = request.legal_basis, request.basis_reference, request.child_pseudonym
    asker = request.from_party.organisation_id
    candidates: list[_Candidate] = []
    best: _Candidate | None = None
    best_permitted = NOTHING
    if hint is None or hint == "consent":
        for consent in consents:
            if consent.child_pseudonym == child and (ref is None or consent.id == ref):
                candidate: _Candidate = (0, consent.id, consent, consent.visible_to(asker))
                candidates.append(candidate)
                permitted = consent_permits(request, consent, policy, requested, None)
                if permitted and _better(candidate, permitted, best, best_permitted):
                    best, best_permitted = candidate, permitted
    if hint == "report-of-concern" or (hint is None and request.purpose == policy.report_of_concern_purpose):
        candidate = (1, "", None, True)
        candidates.append(candidate)
        permitted = report_permits(request, policy, requested, None)
        if permitted and _better(candidate, permitted, best, best_permitted):
            best, best_permitted = candidate, permitted
    if hint is None or hint == "necessary-disclosure":
        for assessment in assessments:
            if assessment.child_pseudonym == child and (ref is None or assessment.id == ref):
                candidate = (2, assessment.id, assessment, assessment.organisation_id == asker)
                candidates.append(candidate)
                permitted = assessment_permits(request, assessment, policy, requested, None)
                if permitted and _better(candidate, permitted, best, best_permitted):
                    best, best_permitted = candidate, permitted
    return candidates, best, best_permitted


def _explained_decision(
    candidates: list[_Candidate],
    best: _Candidate | None,
    best_permitted: frozenset[str],
    request: ShareRequest,
    policy: Policy,
    requested: frozenset[str],
) -> Decision:
    """A denied or partly allowed decision: the chosen basis' reasons first, then every other candidate's,
    and the remedies that could help the denied part."""
    evaluations = _explain_all(candidates, request, policy, requested)
    remedies = unique_remedies(evaluations)
    if best is None:
        reasons = [make_reason("no-legal-basis", None, None)]
        for ev in evaluations:
            reasons.extend(ev.reasons)
        return Decision(False, None, None, (), _cats(requested), tuple(reasons), remedies)
    if best[3]:
        chosen = next(ev for ev in evaluations if (ev.basis, ev.reference) == (_RANKED_BASES[best[0]], best[1] or None))
    else:  # a consent the sender may not see: that it applies, and to what, is all the sender learns
        chosen = Evaluation("consent", None, best_permitted, [_success_reason(best, best_permitted)])
    denied_set = requested - chosen.permitted
    denied = _cats(denied_set)
    # Only remedies that could help the denied part (or that concern no particular category).
    remedies = tuple(r for r in remedies if not r.categories or not denied_set.isdisjoint(r.categories))
    reasons = [*chosen.reasons, make_reason("categories-denied", None, None, denied)]
    for ev in evaluations:
        if ev is not chosen:
            reasons.extend(ev.reasons)
    return Decision(
        True,
        chosen.basis,
        best[1] or None,
        _cats(chosen.permitted),
        denied,
        tuple(reasons),
        remedies,
        basis_visible=best[3],
    )
