"""The facts the engine decides on (parties, consents, necessity assessments, the proposed share) and
its outcomes (decisions, reasons, remedies)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from hub.domain.policy import LegalBasis

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

    def visible_to(self, organisation_id: str) -> bool:
        """Whether ``organisation_id`` may see this consent: it recorded it, or the consent names it by
        id as a party. Naming its organisation *type* is not enough: that would show every consent of a
        county to every organisation of the type (see :func:`~hub.domain.sharing.decide`)."""
        return (
            organisation_id == self.recording_organisation_id
            or organisation_id in self.from_parties.organisation_ids
            or organisation_id in self.to_parties.organisation_ids
        )

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Consent:
        """A copy (see pydantic); derived values are recomputed for the copy. Prefer
        :func:`withdraw_consent` or ``Consent.model_validate``, which validate the changes."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("agreement", None)
        return copied


class ConsentRefusal(BaseModel):
    """A consent request an organisation made that a guardian or the child refused
    (:mod:`hub.domain.sharing.requests`): while it stands (``Policy.consent_refusal_stands_days``) the
    engine points that organisation to other bases for the purposes it asked, not to asking again."""

    model_config = _MODEL

    id: str = Field(min_length=1)
    child_pseudonym: str = Field(min_length=1)
    organisation_id: str = Field(min_length=1)
    purposes: frozenset[str]
    refused_at: AwareDatetime


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
    assessment id (``None``: any). ``child_identity_protected``: the child has protected personal data (the
    sender marked it, or the hub keeps a mark from an earlier message): the policy's protected-identity rule
    withholds categories from the recipient (:mod:`hub.domain.protected_identity`)."""

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
    child_identity_protected: bool = False

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
class Citation:
    """The statute a decision rests on, as cited on the day of the decision.

    ``statute_id`` is the vocabulary's id of the reference (None for an undated version-1 basis);
    ``valid_from``/``valid_until`` its period; ``provision_verified`` false when neither the vocabulary
    nor the county has confirmed the chapter and section; ``provision_source`` where the county did
    (None: the text is the vocabulary's)."""

    legal_basis: str
    vocabulary: str
    vocabulary_version: str
    statute_id: str | None
    sv: str
    en: str
    valid_from: date | None
    valid_until: date | None
    provision_verified: bool
    provision_source: str | None = None

    def as_json(self) -> dict[str, object]:
        """The citation as the decision row and its audit entry keep it (dates as ISO strings)."""
        # dataclasses.asdict without its deep copy (strings, booleans, None and dates need none): the same
        # JSON, at a fifth of the cost (a referral cites twice: its decision row and its audit entry).
        data: dict[str, object] = {name: getattr(self, name) for name in _CITATION_FIELDS}
        for key in ("valid_from", "valid_until"):
            value = getattr(self, key)
            data[key] = None if value is None else value.isoformat()
        return data


_CITATION_FIELDS = tuple(f.name for f in dataclasses.fields(Citation))


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`.

    ``allowed`` is true when at least one requested category may be shared; then ``legal_basis`` and
    ``basis_reference`` (consent or assessment id, ``None`` for a report of concern) name the single basis
    used and ``permitted_categories`` is exactly what may travel. ``denied_categories`` is the rest of the
    request. ``reasons`` explain the outcome (the chosen basis first); ``remedies`` list what would make
    the denied part lawful (empty when everything requested is permitted); ``citation`` the statute the
    basis rested on that day, once the service has cited it (:func:`hub.domain.sharing.citation.cited`).
    All tuples are sorted or in a deterministic order: the same facts always give an equal decision.

    ``basis_visible`` is false when the basis is a consent the sender may not see (another organisation
    recorded it and it names the sender by type only): ``basis_reference`` is then kept for the record
    and for re-checks, but must not be shown to the sender; use :attr:`shown_reference`."""

    allowed: bool
    legal_basis: LegalBasis | None
    basis_reference: str | None
    permitted_categories: tuple[str, ...]
    denied_categories: tuple[str, ...]
    reasons: tuple[Reason, ...]
    remedies: tuple[Remedy, ...] = ()
    basis_visible: bool = True
    citation: Citation | None = None  # the statute in force on the day (hub.domain.sharing.citation)

    @property
    def shown_reference(self) -> str | None:
        """``basis_reference`` as the sender may see it: ``None`` for a consent it may not see."""
        return self.basis_reference if self.basis_visible else None


@dataclass(frozen=True, slots=True)
class ConsentProblem:
    """A problem with a consent about to be recorded: a JSON pointer to the field, a code, sv/en text."""

    pointer: str
    code: str
    sv: str
    en: str


class ConsentAlreadyWithdrawn(ValueError):
    """Raised by :func:`withdraw_consent` for a consent that is already withdrawn."""
