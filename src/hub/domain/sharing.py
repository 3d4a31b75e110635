"""Lawful sharing: consents, legal-basis records and the decision engine.

:func:`decide` is a pure function: given a proposed share (:class:`ShareRequest`), the facts (consents
and necessity assessments about the child) and the :class:`~hub.domain.policy.Policy`, it returns a
:class:`Decision` saying whether the share is allowed, on which legal basis, which data categories may
travel (the golden rule: *requested ∩ what the basis covers ∩ what the policy lets that basis carry*),
which may not, why (Swedish and English), and what would make the rest lawful. No I/O, no clock:
``request.at`` is the time of the share.

Inputs are validated pydantic models (built at the edge); outputs are frozen dataclasses, cheap to build
in the hot path and serialisable with ``pydantic.TypeAdapter(Decision)``. Codes (categories,
organisation types, referral kinds) are checked against the vocabulary by services, not here.
The legal reading encoded here and in the policy is configuration, **not legal advice**.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from hub.domain.policy import LegalBasis, Policy

__all__ = [
    "BASIS_LABELS",
    "REASON_TEXTS",
    "REMEDY_TEXTS",
    "Consent",
    "ConsentAlreadyWithdrawn",
    "ConsentProblem",
    "ConsentState",
    "Decision",
    "DecisionMaker",
    "Grantor",
    "GrantorAgreement",
    "InformationGiven",
    "NecessityAssessment",
    "Party",
    "PartyScope",
    "Reason",
    "Remedy",
    "ShareRequest",
    "check_consent",
    "consent_state",
    "decide",
    "withdraw_consent",
]

_MODEL = ConfigDict(frozen=True, extra="forbid")

ConsentState = Literal["active", "not-yet-valid", "expired", "withdrawn"]
"""A consent's state at a point in time. Consents are never deleted; withdrawal and expiry are states."""


# --------------------------------------------------------------------------------------------- facts


class Party(BaseModel):
    """One side of a share: an organisation (its id) and its organisation type (vocabulary code)."""

    model_config = _MODEL

    organisation_id: str = Field(min_length=1)
    organisation_type: str = Field(min_length=1)

    def label(self) -> str:
        """``"<type> (<id>)"``, used in reason texts."""
        return f"{self.organisation_type} ({self.organisation_id})"


class PartyScope(BaseModel):
    """The parties a consent names on one side: organisations by id and/or whole organisation types.
    A party matches if its id or its type is listed."""

    model_config = _MODEL

    organisation_ids: frozenset[str] = frozenset()
    organisation_types: frozenset[str] = frozenset()

    def matches(self, party: Party) -> bool:
        """Whether ``party`` is covered (listed by id or by type)."""
        return party.organisation_id in self.organisation_ids or (party.organisation_type in self.organisation_types)

    def is_empty(self) -> bool:
        """True when nothing is listed (such a scope matches nobody)."""
        return not self.organisation_ids and not self.organisation_types


class Grantor(BaseModel):
    """A person who gave (or refused) consent: a guardian (vårdnadshavare) or the child.

    ``reference`` is a name-free label or an id in the source system (never a personal identity number).
    ``categories`` is what this grantor agreed to; ``None`` means every category of the consent.
    ``agreed=False`` records a refusal: the grantor counts as absent."""

    model_config = _MODEL

    role: Literal["guardian", "child"]
    reference: str = Field(min_length=1)
    agreed: bool = True
    categories: frozenset[str] | None = None


class InformationGiven(BaseModel):
    """How the grantors were informed before consenting: language (e.g. ``sv``) and form (e.g.
    ``written``, ``oral``, ``easy-read``, ``interpreter``)."""

    model_config = _MODEL

    language: str
    form: str


class Consent(BaseModel):
    """A recorded consent (samtycke, OSL 12 kap. 2 §): what may be exchanged, between which parties,
    for which purposes (referral kinds) and for which period, who gave it and how they were informed.

    ``guardian_count`` is the number of guardians with custody (2 for joint custody); with the default
    policy all of them must agree. ``valid_until`` is exclusive. A withdrawal sets ``withdrawn_at``,
    ``withdrawn_by`` and ``withdrawal_reason`` (see :func:`withdraw_consent`)."""

    model_config = _MODEL

    id: str = Field(min_length=1)
    child_pseudonym: str = Field(min_length=1)
    recording_organisation_id: str = Field(min_length=1)
    grantors: tuple[Grantor, ...]
    guardian_count: int
    data_categories: frozenset[str]
    from_parties: PartyScope
    to_parties: PartyScope
    purposes: frozenset[str]
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    information_given: InformationGiven
    evidence_reference: str
    withdrawn_at: AwareDatetime | None = None
    withdrawn_by: str | None = None
    withdrawal_reason: str | None = None

    @cached_property
    def agreement(self) -> GrantorAgreement:
        """What the grantors who agreed agreed to (derived from ``grantors``, computed once)."""
        guardians: dict[str, frozenset[str]] = {}
        child: frozenset[str] = frozenset()
        for grantor in self.grantors:
            if grantor.agreed:
                agreed = self.data_categories if grantor.categories is None else grantor.categories
                if grantor.role == "guardian":
                    guardians[grantor.reference] = guardians.get(grantor.reference, frozenset()) | agreed
                else:
                    child = child | agreed
        return GrantorAgreement(tuple(guardians[ref] for ref in sorted(guardians)), child)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Consent:
        """A copy (see pydantic); derived values are recomputed for the copy. Prefer
        :func:`withdraw_consent` or ``Consent.model_validate``, which validate the changes."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("agreement", None)
        return copied


@dataclass(frozen=True, slots=True)
class GrantorAgreement:
    """Derived from a consent's grantors: per agreeing guardian (by reference order) the categories they
    agreed to, and the categories the child agreed to."""

    guardians: tuple[frozenset[str], ...]
    child: frozenset[str]


class DecisionMaker(BaseModel):
    """Who decided a necessity assessment: a professional's reference (e.g. HSA-id) and role."""

    model_config = _MODEL

    person: str
    role: str


class NecessityAssessment(BaseModel):
    """A recorded, named assessment that disclosing certain categories to one recipient is necessary
    for the disclosing organisation's own work (OSL 10 kap. 2 §). Judged case by case, never a default:
    the engine only uses it for its child, organisation and recipient, while fresh and complete."""

    model_config = _MODEL

    id: str = Field(min_length=1)
    child_pseudonym: str = Field(min_length=1)
    organisation_id: str = Field(min_length=1)
    recipient_organisation_id: str = Field(min_length=1)
    decided_by: DecisionMaker
    justification: str
    case_reference: str
    data_categories: frozenset[str]
    decided_at: AwareDatetime


class ShareRequest(BaseModel):
    """A proposed share. ``child_age`` is derived by the caller from the personal identity number.

    ``legal_basis`` is the basis the caller invokes, or ``None`` to let the engine find the basis that
    permits most; ``basis_reference`` narrows ``consent`` / ``necessary-disclosure`` to one consent or
    assessment id (``None``: any)."""

    model_config = _MODEL

    from_party: Party
    to_party: Party
    child_pseudonym: str = Field(min_length=1)
    child_age: int = Field(ge=0)
    purpose: str = Field(min_length=1)
    requested_categories: frozenset[str]
    at: AwareDatetime
    legal_basis: LegalBasis | None = None
    basis_reference: str | None = None

    @model_validator(mode="after")
    def _reference_needs_basis(self) -> ShareRequest:
        if self.basis_reference is not None and self.legal_basis not in ("consent", "necessary-disclosure"):
            raise ValueError("basis_reference needs legal_basis 'consent' or 'necessary-disclosure'")
        return self


# ------------------------------------------------------------------------------------------ outcomes


@dataclass(frozen=True, slots=True)
class Reason:
    """Why (part of) a decision came out as it did: a stable ``code``, Swedish and English text, the
    legal basis and basis reference it concerns, and the categories it is about (sorted)."""

    code: str
    sv: str
    en: str
    legal_basis: LegalBasis | None = None
    basis_reference: str | None = None
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Remedy:
    """What would make a denied share (or its denied categories) lawful: ``code``, Swedish and English
    text, and the categories concerned (sorted)."""

    code: str
    sv: str
    en: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`.

    ``allowed`` is true when at least one requested category may be shared; then ``legal_basis`` and
    ``basis_reference`` (consent or assessment id, ``None`` for a report of concern) name the single basis
    used and ``permitted_categories`` is exactly what may travel. ``denied_categories`` is the rest of the
    request. ``reasons`` explain the outcome (the chosen basis first); ``remedies`` list what would make
    the denied part lawful (empty when everything requested is permitted). All tuples are sorted or in a
    deterministic order: the same facts always give an equal decision."""

    allowed: bool
    legal_basis: LegalBasis | None
    basis_reference: str | None
    permitted_categories: tuple[str, ...]
    denied_categories: tuple[str, ...]
    reasons: tuple[Reason, ...]
    remedies: tuple[Remedy, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsentProblem:
    """A problem with a consent about to be recorded: a JSON pointer to the field, a code, sv/en text."""

    pointer: str
    code: str
    sv: str
    en: str


class ConsentAlreadyWithdrawn(ValueError):
    """Raised by :func:`withdraw_consent` for a consent that is already withdrawn."""


# --------------------------------------------------------------------------------------------- texts
# Stable codes with Swedish and English templates. Codes are the API; texts may be improved freely.

BASIS_LABELS: dict[LegalBasis, tuple[str, str]] = {
    "consent": ("samtycke", "consent"),
    "report-of-concern": ("en orosanmälan", "a report of concern"),
    "necessary-disclosure": ("nödvändigt utlämnande", "necessary disclosure"),
}
"""Swedish and English labels for the legal bases, used in texts."""

REASON_TEXTS: dict[str, tuple[str, str]] = {
    "consent-applies": (
        "Samtycke {ref} gäller och omfattar: {categories}.",
        "Consent {ref} is valid and covers: {categories}.",
    ),
    "consent-withdrawn": (
        "Samtycke {ref} återkallades {withdrawn_at}.",
        "Consent {ref} was withdrawn at {withdrawn_at}.",
    ),
    "consent-not-yet-valid": (
        "Samtycke {ref} gäller först från {valid_from}.",
        "Consent {ref} is not valid until {valid_from}.",
    ),
    "consent-expired": (
        "Samtycke {ref} upphörde att gälla {valid_until}.",
        "Consent {ref} expired at {valid_until}.",
    ),
    "consent-exceeds-max-duration": (
        "Samtycke {ref} gäller längre än policyns längsta tillåtna giltighetstid ({max_days} dagar) "
        "och är därför ogiltigt.",
        "Consent {ref} runs longer than the policy's maximum duration ({max_days} days) and is therefore invalid.",
    ),
    "consent-sender-not-covered": (
        "Samtycke {ref} omfattar inte avsändaren {sender}.",
        "Consent {ref} does not cover the sender {sender}.",
    ),
    "consent-recipient-not-covered": (
        "Samtycke {ref} omfattar inte mottagaren {recipient}.",
        "Consent {ref} does not cover the recipient {recipient}.",
    ),
    "consent-purpose-not-covered": (
        "Samtycke {ref} omfattar inte ändamålet {purpose}.",
        "Consent {ref} does not cover the purpose {purpose}.",
    ),
    "consent-guardian-missing": (
        "Samtycke {ref} kräver samtycke från {required} vårdnadshavare men har {present}.",
        "Consent {ref} needs the agreement of {required} guardian(s) but has {present}.",
    ),
    "consent-guardian-categories": (
        "Alla vårdnadshavare som måste samtycka har inte samtyckt till: {categories} (samtycke {ref}).",
        "Not every guardian who must consent agreed to: {categories} (consent {ref}).",
    ),
    "consent-child-missing": (
        "Barnet är {age} år och barnets eget samtycke krävs för: {categories} (samtycke {ref}).",
        "The child is {age} and the child's own consent is required for: {categories} (consent {ref}).",
    ),
    "consent-categories-not-covered": (
        "Samtycke {ref} omfattar inte: {categories}.",
        "Consent {ref} does not cover: {categories}.",
    ),
    "no-consent": (
        "Det finns inget registrerat samtycke för barnet.",
        "No consent is recorded for the child.",
    ),
    "consent-not-found": (
        "Samtycke {ref} finns inte för barnet.",
        "Consent {ref} does not exist for this child.",
    ),
    "report-of-concern-applies": (
        "Anmälningsplikten vid oro för barn bryter sekretessen utan samtycke för: {categories}.",
        "The duty to report concern about a child overrides secrecy without consent for: {categories}.",
    ),
    "report-purpose-mismatch": (
        "Anmälningsplikten gäller bara ändamålet {expected}, inte {purpose}.",
        "The duty to report concern applies only to the purpose {expected}, not {purpose}.",
    ),
    "report-recipient-type-not-allowed": (
        "En orosanmälan får bara tas emot av: {types}; mottagaren är {recipient}.",
        "A report of concern may only be received by: {types}; the recipient is {recipient}.",
    ),
    "necessity-assessment-applies": (
        "Nödvändigt utlämnande enligt dokumenterad prövning {ref} ({role}, ärende {case_reference}) för: {categories}.",
        "Necessary disclosure under recorded assessment {ref} ({role}, case {case_reference}) for: {categories}.",
    ),
    "no-necessity-assessment": (
        "Det finns ingen dokumenterad prövning av nödvändigt utlämnande för barnet; ett sådant utlämnande kräver en.",
        "No recorded necessity assessment exists for the child; necessary disclosure requires one.",
    ),
    "necessity-assessment-not-found": (
        "Prövning {ref} av nödvändigt utlämnande finns inte för barnet.",
        "Necessity assessment {ref} does not exist for this child.",
    ),
    "necessity-assessment-other-organisation": (
        "Prövning {ref} gjordes av en annan organisation än avsändaren.",
        "Assessment {ref} was made by an organisation other than the sender.",
    ),
    "necessity-assessment-other-recipient": (
        "Prövning {ref} gäller en annan mottagare.",
        "Assessment {ref} concerns a different recipient.",
    ),
    "necessity-assessment-stale": (
        "Prövning {ref} gjordes {decided_at} och är äldre än {max_age_days} dagar.",
        "Assessment {ref} was made at {decided_at} and is older than {max_age_days} days.",
    ),
    "necessity-assessment-in-future": (
        "Prövning {ref} är daterad efter tidpunkten för delningen ({decided_at}).",
        "Assessment {ref} is dated after the time of the share ({decided_at}).",
    ),
    "necessity-assessment-incomplete": (
        "Prövning {ref} saknar: {fields}.",
        "Assessment {ref} lacks: {fields}.",
    ),
    "necessity-assessment-categories-not-covered": (
        "Prövning {ref} omfattar inte: {categories}.",
        "Assessment {ref} does not cover: {categories}.",
    ),
    "category-not-allowed-for-basis": (
        "Policyn tillåter aldrig att {basis_sv} omfattar: {categories}.",
        "The policy never lets {basis_en} carry: {categories}.",
    ),
    "categories-denied": (
        "Följande kategorier får inte delas: {categories}.",
        "These categories may not be shared: {categories}.",
    ),
    "no-legal-basis": (
        "Delningen nekas: ingen rättslig grund tillåter någon av de begärda kategorierna.",
        "Sharing is denied: no legal basis allows any of the requested categories.",
    ),
    "no-categories-requested": (
        "Inga kategorier begärdes; inget delas.",
        "No categories were requested; nothing is shared.",
    ),
    # Problems found by check_consent.
    "consent-period-empty": (
        "Giltighetstiden måste sluta efter att den börjar.",
        "The validity period must end after it starts.",
    ),
    "consent-period-too-long": (
        "Giltighetstiden får vara högst {max_days} dagar.",
        "The validity period may be at most {max_days} days.",
    ),
    "consent-period-ended": (
        "Giltighetstiden har redan gått ut.",
        "The validity period has already ended.",
    ),
    "guardian-count-out-of-range": (
        "Antalet vårdnadshavare måste vara 1 eller 2.",
        "The number of guardians must be 1 or 2.",
    ),
    "no-guardian-grantor": (
        "Minst en vårdnadshavare måste ha samtyckt.",
        "At least one guardian must have agreed.",
    ),
    "more-guardians-than-custody": (
        "Fler vårdnadshavare har angetts än antalet vårdnadshavare.",
        "More guardian grantors are given than the number of guardians.",
    ),
    "duplicate-grantor": (
        "Samma person anges mer än en gång.",
        "The same grantor is given more than once.",
    ),
    "grantor-categories-outside-consent": (
        "En samtyckande person kan bara samtycka till kategorier som samtycket omfattar.",
        "A grantor can only agree to categories the consent covers.",
    ),
    "required-field-empty": (
        "Fältet får inte vara tomt.",
        "The field must not be empty.",
    ),
    "withdrawal-incomplete": (
        "Ett återkallande måste ange när, av vem och varför.",
        "A withdrawal must state when, by whom and why.",
    ),
}
"""Swedish and English templates for reason and consent-problem codes."""

REMEDY_TEXTS: dict[str, tuple[str, str]] = {
    "record-consent": (
        "Registrera ett samtycke från vårdnadshavarna (och barnet där det krävs) som omfattar avsändaren, "
        "mottagaren, ändamålet {purpose} och: {categories}.",
        "Record a consent from the guardians (and the child where required) covering the sender, the "
        "recipient, the purpose {purpose} and: {categories}.",
    ),
    "new-consent": (
        "Inhämta ett nytt samtycke; samtycke {ref} är återkallat.",
        "Obtain a new consent; consent {ref} has been withdrawn.",
    ),
    "renew-consent": (
        "Förnya samtycket; samtycke {ref} har upphört att gälla.",
        "Renew the consent; consent {ref} has expired.",
    ),
    "wait-for-consent-start": (
        "Dela tidigast {valid_from}, när samtycke {ref} börjar gälla.",
        "Share on or after {valid_from}, when consent {ref} takes effect.",
    ),
    "consent-within-max-duration": (
        "Registrera samtycket på nytt med en giltighetstid på högst {max_days} dagar.",
        "Record the consent again with a period of at most {max_days} days.",
    ),
    "consent-covering-sender": (
        "Ett samtycke som omfattar avsändaren {sender}.",
        "A consent covering the sender {sender}.",
    ),
    "consent-covering-recipient": (
        "Ett samtycke som omfattar mottagaren {recipient}.",
        "A consent covering the recipient {recipient}.",
    ),
    "consent-covering-purpose": (
        "Ett samtycke som omfattar ändamålet {purpose}.",
        "A consent covering the purpose {purpose}.",
    ),
    "consent-covering-categories": (
        "Ett samtycke där alla som måste samtycka omfattar: {categories}.",
        "A consent in which everyone who must consent covers: {categories}.",
    ),
    "consent-from-second-guardian": (
        "Samtycke även från den andra vårdnadshavaren (gemensam vårdnad).",
        "Consent from the second guardian as well (joint custody).",
    ),
    "consent-from-guardian": (
        "Samtycke från {required} vårdnadshavare.",
        "Consent from {required} guardian(s).",
    ),
    "child-consent": (
        "Barnets eget samtycke till: {categories}.",
        "The child's own consent to: {categories}.",
    ),
    "other-legal-basis": (
        "Åberopa en annan rättslig grund (samtycke eller nödvändigt utlämnande); anmälningsplikten "
        "gäller bara {expected}.",
        "Invoke another legal basis (consent or necessary disclosure); the duty to report concern "
        "applies only to {expected}.",
    ),
    "report-to-allowed-recipient-type": (
        "Skicka orosanmälan till en mottagare av typen: {types}.",
        "Send the report of concern to a recipient of type: {types}.",
    ),
    "recorded-necessity-assessment": (
        "En dokumenterad prövning av nödvändigt utlämnande hos avsändaren för denna mottagare (vem som "
        "beslutat, motivering, ärendereferens) som omfattar: {categories}.",
        "A recorded necessity assessment by the sender for this recipient (who decided, justification, "
        "case reference) covering: {categories}.",
    ),
}
"""Swedish and English templates for remedy codes."""


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
    valid = True
    if assessment.organisation_id != request.from_party.organisation_id:
        if ev is None:
            return _NOTHING
        valid = False
        ev.note("necessity-assessment-other-organisation")
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
_Candidate = tuple[int, str, _Fact]  # (basis rank, reference, the fact: a consent, an assessment, None)
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
    rank, ref, _ = candidate
    ev = _Evaluation(_RANKED_BASES[rank], ref or None)
    ev.permitted = _permits(candidate, request, policy, requested, ev)
    if ev.permitted:
        ev.reasons.insert(0, _success_reason(candidate, ev.permitted))
    return ev


def _success_reason(candidate: _Candidate, permitted: frozenset[str]) -> Reason:
    _, ref, fact = candidate
    cats = _cats(permitted)
    if isinstance(fact, Consent):
        return _reason("consent-applies", "consent", ref, cats)
    if isinstance(fact, NecessityAssessment):
        return _reason(
            "necessity-assessment-applies",
            "necessary-disclosure",
            ref,
            cats,
            role=fact.decided_by.role,
            case_reference=fact.case_reference,
        )
    return _reason("report-of-concern-applies", "report-of-concern", None, cats)


def _explain_all(
    candidates: list[_Candidate], request: ShareRequest, policy: Policy, requested: frozenset[str]
) -> list[_Evaluation]:
    """Every candidate explained, in tie-break order, with a placeholder for a basis that was
    considered but has no facts (no consent, no assessment)."""
    hint, ref = request.legal_basis, request.basis_reference
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
    """Whether ``candidate`` beats ``best``: more categories, or as many and earlier in tie-break order."""
    if best is None or len(permitted) > len(best_permitted):
        return True
    return len(permitted) == len(best_permitted) and candidate[:2] < best[:2]


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
    categories wins; ties go to consent, then report of concern, then necessary disclosure, then the
    lowest id. Facts about other children are ignored. One basis carries the whole share: categories
    are never combined across bases.

    If some but not all requested categories are permitted, the decision is allowed with the permitted
    subset and the rest denied, explained and remedied. A fully allowed decision carries the chosen
    basis' reasons only; a denied or partial one carries the reasons of every candidate (the chosen
    one first) and the remedies of all of them.
    """
    requested = request.requested_categories
    if not requested:
        return Decision(False, None, None, (), (), (_reason("no-categories-requested", None, None),))
    hint, ref, child = request.legal_basis, request.basis_reference, request.child_pseudonym
    # Screen every candidate in one pass (no text is built), keeping the best in tie-break order.
    candidates: list[_Candidate] = []
    best: _Candidate | None = None
    best_permitted = _NOTHING
    if hint is None or hint == "consent":
        for consent in consents:
            if consent.child_pseudonym == child and (ref is None or consent.id == ref):
                candidate: _Candidate = (0, consent.id, consent)
                candidates.append(candidate)
                permitted = _consent_permits(request, consent, policy, requested, None)
                if permitted and _better(candidate, permitted, best, best_permitted):
                    best, best_permitted = candidate, permitted
    if hint == "report-of-concern" or (hint is None and request.purpose == policy.report_of_concern_purpose):
        candidate = (1, "", None)
        candidates.append(candidate)
        permitted = _report_permits(request, policy, requested, None)
        if permitted and _better(candidate, permitted, best, best_permitted):
            best, best_permitted = candidate, permitted
    if hint is None or hint == "necessary-disclosure":
        for assessment in assessments:
            if assessment.child_pseudonym == child and (ref is None or assessment.id == ref):
                candidate = (2, assessment.id, assessment)
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
        )
    evaluations = _explain_all(candidates, request, policy, requested)
    remedies = _unique_remedies(evaluations)
    if best is None:
        reasons = [_reason("no-legal-basis", None, None)]
        for ev in evaluations:
            reasons.extend(ev.reasons)
        return Decision(False, None, None, (), _cats(requested), tuple(reasons), remedies)
    chosen = next(ev for ev in evaluations if (ev.basis, ev.reference) == (_RANKED_BASES[best[0]], best[1] or None))
    denied_set = requested - chosen.permitted
    denied = _cats(denied_set)
    # Only remedies that could help the denied part (or that concern no particular category).
    remedies = tuple(r for r in remedies if not r.categories or not denied_set.isdisjoint(r.categories))
    reasons = [*chosen.reasons, _reason("categories-denied", None, None, denied)]
    for ev in evaluations:
        if ev is not chosen:
            reasons.extend(ev.reasons)
    return Decision(True, chosen.basis, chosen.reference, _cats(chosen.permitted), denied, tuple(reasons), remedies)


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
