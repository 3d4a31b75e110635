"""The decision engine: which legal basis permits which categories, and why not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from hub.domain.policy import LegalBasis, Policy
from hub.domain.sharing.facts import Consent, ConsentState, Decision, NecessityAssessment, Reason, Remedy, ShareRequest
from hub.domain.sharing.texts import BASIS_LABELS, REASON_TEXTS, REMEDY_TEXTS

# ------------------------------------------------------------------------------------------- helpers


def _cats(categories: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(categories))


# Reasons and remedies are immutable and their text depends only on the arguments, so equal ones are
# shared: rendering text is the most expensive step of the hot path.
@lru_cache(maxsize=8192)
def _reason(
    code: str,
    basis: LegalBasis | None,
    ref: str | None,
    categories: tuple[str, ...] = (),
    **values: object,
) -> Reason:
    sv, en = REASON_TEXTS[code]
    values["ref"] = ref
    values["categories"] = ", ".join(categories)
    if basis is not None:
        values["basis_sv"], values["basis_en"] = BASIS_LABELS[basis]
    return Reason(code, sv.format_map(values), en.format_map(values), basis, ref, categories)


@lru_cache(maxsize=8192)
def _remedy(code: str, categories: tuple[str, ...] = (), **values: object) -> Remedy:
    sv, en = REMEDY_TEXTS[code]
    values["categories"] = ", ".join(categories)
    return Remedy(code, sv.format_map(values), en.format_map(values), categories)


_NOTHING: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Evaluation:
    """The explanation of one candidate basis; built only when a decision is explained."""

    basis: LegalBasis
    reference: str | None
    permitted: frozenset[str] = _NOTHING
    reasons: list[Reason] = field(default_factory=list)
    remedies: list[Remedy] = field(default_factory=list)

    def note(self, code: str, categories: tuple[str, ...] = (), **values: object) -> None:
        self.reasons.append(_reason(code, self.basis, self.reference, categories, **values))

    def remedy(self, code: str, categories: tuple[str, ...] = (), **values: object) -> None:
        # A remedy "covering: (nothing)" would promise a path the policy never opens for these categories.
        if categories or "{categories}" not in REMEDY_TEXTS[code][1]:
            self.remedies.append(_remedy(code, categories, **values))


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


# ---------------------------------------------------------------------------------------- evaluation
# Each basis has one function that returns the categories it permits. Without an _Evaluation it screens:
# it stops at the first failure and builds no text (the hot path). With one it runs every check and
# records reasons and remedies. One function for both keeps screening and explanation in agreement.


def _consent_permits(
    request: ShareRequest, consent: Consent, policy: Policy, requested: frozenset[str], ev: _Evaluation | None
) -> frozenset[str]:
    at = request.at
    valid = True
    ref = consent.id
    withdrawn_at = consent.withdrawn_at
    if withdrawn_at is not None and withdrawn_at <= at:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("consent-withdrawn", withdrawn_at=withdrawn_at)
        ev.remedy("new-consent", ref=ref)
    if at < consent.valid_from:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("consent-not-yet-valid", valid_from=consent.valid_from)
        ev.remedy("wait-for-consent-start", ref=ref, valid_from=consent.valid_from)
    elif at >= consent.valid_until:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("consent-expired", valid_until=consent.valid_until)
        ev.remedy("renew-consent", ref=ref)
    if consent.valid_until - consent.valid_from > policy.max_consent_duration:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("consent-exceeds-max-duration", max_days=policy.max_consent_duration_days)
        ev.remedy("consent-within-max-duration", max_days=policy.max_consent_duration_days)
    party, scope = request.from_party, consent.from_parties
    if party.organisation_id not in scope.organisation_ids and (
        party.organisation_type not in scope.organisation_types
    ):
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("consent-sender-not-covered", sender=party.label())
        ev.remedy("consent-covering-sender", sender=party.label())
    party, scope = request.to_party, consent.to_parties
    if party.organisation_id not in scope.organisation_ids and (
        party.organisation_type not in scope.organisation_types
    ):
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("consent-recipient-not-covered", recipient=party.label())
        ev.remedy("consent-covering-recipient", recipient=party.label())
    if request.purpose not in consent.purposes:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("consent-purpose-not-covered", purpose=request.purpose)
        ev.remedy("consent-covering-purpose", purpose=request.purpose)

    # The golden rule, step by step: what the consent names, what the policy lets consent carry, what
    # every required grantor agreed to.
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
    if not candidate and ev is None:
        return _NOTHING

    agreement = consent.agreement
    sets = agreement.guardians
    child_agreed = agreement.child
    required = consent.guardian_count if policy.all_guardians_must_consent else 1
    required = max(required, 1)
    if len(sets) < required:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("consent-guardian-missing", required=required, present=len(sets))
        if required == 2 and len(sets) == 1:
            ev.remedy("consent-from-second-guardian")
        else:
            ev.remedy("consent-from-guardian", required=required)
    else:
        if required == 1:
            covered = _NOTHING.union(*sets)
        elif len(sets) == required:
            covered = _NOTHING.union(sets[0]).intersection(*sets[1:])
        else:
            covered = frozenset(c for c in candidate if sum(c in s for s in sets) >= required)
        if not candidate <= covered:
            if ev is not None:
                cats = _cats(candidate - covered)
                ev.note("consent-guardian-categories", cats)
                ev.remedy("consent-covering-categories", cats)
            candidate = candidate & covered

    age = request.child_age
    need_child = candidate - child_agreed
    if need_child and age >= policy.youngest_child_consent_age:
        missing = frozenset(c for c in need_child if age >= policy.child_consent_age_for(c))
        if missing:
            if ev is not None:
                cats = _cats(missing)
                ev.note("consent-child-missing", cats, age=age)
                ev.remedy("child-consent", cats)
            candidate = candidate - missing

    return candidate if valid else _NOTHING


def _report_permits(
    request: ShareRequest, policy: Policy, requested: frozenset[str], ev: _Evaluation | None
) -> frozenset[str]:
    valid = True
    if request.purpose != policy.report_of_concern_purpose:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("report-purpose-mismatch", purpose=request.purpose, expected=policy.report_of_concern_purpose)
        ev.remedy("other-legal-basis", expected=policy.report_of_concern_purpose)
    allowed_types = policy.report_of_concern_recipient_types
    if request.to_party.organisation_type not in allowed_types:
        if ev is None:
            return _NOTHING
        valid = False
        types = ", ".join(sorted(allowed_types))
        ev.note("report-recipient-type-not-allowed", types=types, recipient=request.to_party.label())
        ev.remedy("report-to-allowed-recipient-type", types=types)
    policy_allowed = policy.legal_basis_categories["report-of-concern"]
    permitted = requested & policy_allowed
    if ev is not None and len(permitted) < len(requested):
        ev.note("category-not-allowed-for-basis", _cats(requested - policy_allowed))
    return permitted if valid else _NOTHING


def _assessment_permits(
    request: ShareRequest,
    assessment: NecessityAssessment,
    policy: Policy,
    requested: frozenset[str],
    ev: _Evaluation | None,
) -> frozenset[str]:
    if assessment.organisation_id != request.from_party.organisation_id:
        return _NOTHING  # another organisation's assessment: never the sender's basis, never explained
    valid = True
    if assessment.recipient_organisation_id != request.to_party.organisation_id:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("necessity-assessment-other-recipient")
    if assessment.decided_at > request.at:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("necessity-assessment-in-future", decided_at=assessment.decided_at)
    elif request.at - assessment.decided_at > policy.necessity_assessment_max_age:
        if ev is None:
            return _NOTHING
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
            return _NOTHING
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
    return candidate if valid else _NOTHING


_Fact = Consent | NecessityAssessment | None
# (basis rank, reference, the fact: a consent, an assessment or None, whether the sender may see it)
_Candidate = tuple[int, str, _Fact, bool]
_RANKED_BASES: tuple[LegalBasis, ...] = ("consent", "report-of-concern", "necessary-disclosure")


def _permits(
    candidate: _Candidate,
    request: ShareRequest,
    policy: Policy,
    requested: frozenset[str],
    ev: _Evaluation | None,
) -> frozenset[str]:
    fact = candidate[2]
    if isinstance(fact, Consent):
        return _consent_permits(request, fact, policy, requested, ev)
    if isinstance(fact, NecessityAssessment):
        return _assessment_permits(request, fact, policy, requested, ev)
    return _report_permits(request, policy, requested, ev)


def _explain(candidate: _Candidate, request: ShareRequest, policy: Policy, requested: frozenset[str]) -> _Evaluation:
    rank, ref, _, _ = candidate
    ev = _Evaluation(_RANKED_BASES[rank], ref or None)
    ev.permitted = _permits(candidate, request, policy, requested, ev)
    if ev.permitted:
        ev.reasons.insert(0, _success_reason(candidate, ev.permitted))
    return ev


def _success_reason(candidate: _Candidate, permitted: frozenset[str]) -> Reason:
    _, ref, fact, visible = candidate
    cats = _cats(permitted)
    if isinstance(fact, Consent):
        if not visible:
            return _reason("consent-of-another-organisation-applies", "consent", None, cats)
        return _reason("consent-applies", "consent", ref, cats)
    if isinstance(fact, NecessityAssessment):
        # No free text of the assessment (role, case reference): explanations are stored in plain.
        return _reason("necessity-assessment-applies", "necessary-disclosure", ref, cats)
    return _reason("report-of-concern-applies", "report-of-concern", None, cats)


def _explain_all(
    candidates: list[_Candidate], request: ShareRequest, policy: Policy, requested: frozenset[str]
) -> list[_Evaluation]:
    """Every candidate the sender may see explained, in tie-break order, with a placeholder for a basis
    that was considered but has no facts the sender may see (no consent, no assessment). Invisible
    candidates leave no trace: the explanation is the same as if they did not exist."""
    hint, ref = request.legal_basis, request.basis_reference
    candidates = [c for c in candidates if c[3]]
    evaluations = [_explain(c, request, policy, requested) for c in sorted(candidates, key=lambda c: c[:2])]
    if hint in (None, "consent") and not any(c[0] == 0 for c in candidates):
        ev = _Evaluation("consent", ref)
        ev.note("consent-not-found" if ref else "no-consent")
        ev.remedy(
            "record-consent",
            _cats(requested & policy.legal_basis_categories["consent"]),
            purpose=request.purpose,
        )
        evaluations.insert(0, ev)
    if hint in (None, "necessary-disclosure") and not any(c[0] == 2 for c in candidates):
        ev = _Evaluation("necessary-disclosure", ref)
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


def _unique_remedies(evaluations: Iterable[_Evaluation]) -> tuple[Remedy, ...]:
    seen: dict[tuple[str, str], Remedy] = {}
    for ev in evaluations:
        for remedy in ev.remedies:
            seen.setdefault((remedy.code, remedy.en), remedy)
    return tuple(seen[key] for key in sorted(seen))


def decide(
    request: ShareRequest,
    *,
    consents: Iterable[Consent],
    assessments: Iterable[NecessityAssessment],
    policy: Policy,
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
    """
    requested = request.requested_categories
    if not requested:
        return Decision(False, None, None, (), (), (_reason("no-categories-requested", None, None),))
    hint, ref, child = request.legal_basis, request.basis_reference, request.child_pseudonym
    asker = request.from_party.organisation_id
    # Screen every candidate in one pass (no text is built), keeping the best in tie-break order.
    candidates: list[_Candidate] = []
    best: _Candidate | None = None
    best_permitted = _NOTHING
    if hint is None or hint == "consent":
        for consent in consents:
            if consent.child_pseudonym == child and (ref is None or consent.id == ref):
                candidate: _Candidate = (0, consent.id, consent, consent.visible_to(asker))
                candidates.append(candidate)
                permitted = _consent_permits(request, consent, policy, requested, None)
                if permitted and _better(candidate, permitted, best, best_permitted):
                    best, best_permitted = candidate, permitted
    if hint == "report-of-concern" or (hint is None and request.purpose == policy.report_of_concern_purpose):
        candidate = (1, "", None, True)
        candidates.append(candidate)
        permitted = _report_permits(request, policy, requested, None)
        if permitted and _better(candidate, permitted, best, best_permitted):
            best, best_permitted = candidate, permitted
    if hint is None or hint == "necessary-disclosure":
        for assessment in assessments:
            if assessment.child_pseudonym == child and (ref is None or assessment.id == ref):
                candidate = (2, assessment.id, assessment, assessment.organisation_id == asker)
                candidates.append(candidate)
                permitted = _assessment_permits(request, assessment, policy, requested, None)
                if permitted and _better(candidate, permitted, best, best_permitted):
                    best, best_permitted = candidate, permitted

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
    evaluations = _explain_all(candidates, request, policy, requested)
    remedies = _unique_remedies(evaluations)
    if best is None:
        reasons = [_reason("no-legal-basis", None, None)]
        for ev in evaluations:
            reasons.extend(ev.reasons)
        return Decision(False, None, None, (), _cats(requested), tuple(reasons), remedies)
    if best[3]:
        chosen = next(ev for ev in evaluations if (ev.basis, ev.reference) == (_RANKED_BASES[best[0]], best[1] or None))
    else:  # a consent the sender may not see: that it applies, and to what, is all the sender learns
        chosen = _Evaluation("consent", None, best_permitted, [_success_reason(best, best_permitted)])
    denied_set = requested - chosen.permitted
    denied = _cats(denied_set)
    # Only remedies that could help the denied part (or that concern no particular category).
    remedies = tuple(r for r in remedies if not r.categories or not denied_set.isdisjoint(r.categories))
    reasons = [*chosen.reasons, _reason("categories-denied", None, None, denied)]
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
