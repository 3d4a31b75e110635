"""Plain code systems, organisation types, legal bases, the referral lifecycle and the child's plan schema."""

from __future__ import annotations

from datetime import date
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    TypeAdapter,
    model_validator,
)

from hub.domain.vocabulary.base import (
    Code,
    CodeSystemBase,
    Concept,
    ConceptEntry,
    DocumentBase,
    LocalizedText,
    _Frozen,
    _known,
    _unique,
)
from hub.domain.vocabulary.tools import (
    FiveQuestionsDoc,
    InterventionLevelsDoc,
    MyWorldTriangleDoc,
    PracticeModelDoc,
    ResilienceMatrixDoc,
)
from hub.domain.vocabulary.wheel import VariantDoc, WellbeingWheelDoc


# ------------------------------------------------------------------------------ plain code systems
class CodeSystemDoc(CodeSystemBase):
    """A flat code system (referral kinds, rejection reasons, data categories)."""

    kind: Literal["code-system"]
    concept: tuple[Concept, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> CodeSystemDoc:
        _unique([c.code for c in self.concept], "concept")
        return self

    def concepts(self) -> list[ConceptEntry]:
        return [c.entry() for c in self.concept]


Sector = Literal["school", "social-services", "healthcare", "other"]


class OrganisationType(Concept):
    """A kind of organisation and the sector whose secrecy regime it works under."""

    sector: Sector


class OrganisationTypesDoc(CodeSystemBase):
    """Organisation types with their sector."""

    kind: Literal["organisation-types"]
    concept: tuple[OrganisationType, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> OrganisationTypesDoc:
        _unique([c.code for c in self.concept], "concept")
        return self

    def concepts(self) -> list[ConceptEntry]:
        return [c.entry({"sector": c.sector}) for c in self.concept]


class StatuteReference(_Frozen):
    """One statute a legal basis rests on, and the days it is in force: from ``valid_from`` (inclusive,
    Swedish calendar) until ``valid_until`` (exclusive; None: still in force). ``sources`` say where the
    reference was checked. ``provision_verified`` false: the act and its date are confirmed but not the
    chapter and section, so the citation names the act only, and a county may supply the provision
    through its policy (``Policy.statute_provisions``) once its lawyers have confirmed it."""

    id: Code
    citation: LocalizedText
    valid_from: date
    valid_until: date | None = None
    sources: tuple[str, ...] = Field(min_length=1)
    provision_verified: bool = True

    @model_validator(mode="after")
    def _check(self) -> StatuteReference:
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError(f"statute {self.id}: valid_until must be after valid_from")
        return self

    def in_force(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day < self.valid_until)

    def label(self) -> LocalizedText:
        """The citation with its period, as the FHIR CodeSystem's ``statute`` property shows it."""
        until = "" if self.valid_until is None else self.valid_until.isoformat()
        return LocalizedText(
            sv=f"{self.citation.sv} (gäller {self.valid_from.isoformat()}–{until})",
            en=f"{self.citation.en} (in force {self.valid_from.isoformat()}–{until})",
        )


class LegalBasis(Concept):
    """A legal basis for sharing, with its statute and what it demands of the share.

    Version 1 of ``legal-bases`` carries one undated ``statute`` per basis; from version 2 each basis
    carries ``statutes``, dated, none overlapping, so a decision cites the one in force on its day."""

    statute: LocalizedText | None = None
    statutes: tuple[StatuteReference, ...] = ()
    breaks_secrecy: bool
    requires_consent: bool
    requires_recorded_assessment: bool
    recipient_organisation_types: tuple[Code, ...] = ()

    @model_validator(mode="after")
    def _check_statutes(self) -> LegalBasis:
        if (self.statute is None) == (not self.statutes):
            raise ValueError(f"legal basis {self.code}: give either 'statute' (undated) or 'statutes' (dated)")
        _unique([s.id for s in self.statutes], "statute")
        ordered = sorted(self.statutes, key=lambda s: s.valid_from)
        for before, after in pairwise(ordered):
            if before.valid_until is None or before.valid_until > after.valid_from:
                raise ValueError(f"legal basis {self.code}: statutes {before.id} and {after.id} overlap")
        return self

    def statute_at(self, day: date) -> StatuteReference | None:
        """The dated statute reference in force on ``day``; None when none is (or the basis is undated)."""
        return next((s for s in self.statutes if s.in_force(day)), None)


class LegalBasesDoc(CodeSystemBase):
    """Legal bases for sharing information about a child."""

    kind: Literal["legal-bases"]
    concept: tuple[LegalBasis, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> LegalBasesDoc:
        _unique([c.code for c in self.concept], "concept")
        return self

    def basis(self, code: str) -> LegalBasis | None:
        return next((c for c in self.concept if c.code == code), None)

    def concepts(self) -> list[ConceptEntry]:
        return [
            c.entry(
                {
                    "statute": c.statute if c.statute is not None else [s.label() for s in c.statutes],
                    "breaks-secrecy": c.breaks_secrecy,
                    "requires-consent": c.requires_consent,
                    "requires-recorded-assessment": c.requires_recorded_assessment,
                    "recipient-organisation-type": list(c.recipient_organisation_types),
                }
            )
            for c in self.concept
        ]


# ------------------------------------------------------------------------------------- life stages
class StageEnd(_Frozen):
    """When a stage is expected to end: this day (``month``, ``day``) in the year the child turns ``turns``
    (Swedish schooling goes by the calendar year of birth, so the year alone dates it)."""

    turns: int = Field(ge=0, le=25)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)


class LifeStage(Concept):
    """A stage of a child's life with the organisation types that hold the named person during it, and
    (from 1.1.0) when it is expected to end."""

    organisation_types: tuple[Code, ...] = Field(min_length=1)
    expected_end: StageEnd | None = None


class LifeStagesDoc(CodeSystemBase):
    """The life stages, in the order a child passes through them, each with the organisation types that
    may be its named person (the team around the child)."""

    kind: Literal["life-stages"]
    concept: tuple[LifeStage, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> LifeStagesDoc:
        _unique([c.code for c in self.concept], "concept")
        return self

    def concepts(self) -> list[ConceptEntry]:
        return [
            c.entry(
                {"organisation-type": list(c.organisation_types)}
                | ({} if c.expected_end is None else {"expected-end-age": c.expected_end.turns})
            )
            for c in self.concept
        ]

    def holders(self) -> dict[str, frozenset[str]]:
        """Each stage's code and the organisation types that may hold the named person in it."""
        return {c.code: frozenset(c.organisation_types) for c in self.concept}

    def ends(self) -> dict[str, StageEnd]:
        """Each stage's expected end, where the version gives one."""
        return {c.code: c.expected_end for c in self.concept if c.expected_end is not None}


# ------------------------------------------------------------------------------- referral lifecycle
Actor = Literal["sender", "receiver", "hub"]


class ReferralStatus(Concept):
    """A referral status (FHIR Task.status); ``terminal`` statuses have no way out."""

    terminal: bool = False


class ReferralTransition(_Frozen):
    """An allowed status change: who makes it and whether it needs a reason (or carries feedback)."""

    from_: Code = Field(alias="from")
    to: Code
    actor: Actor
    reason_required: bool = False
    feedback_required: bool = False
    note: LocalizedText | None = None


class ReferralStatusesDoc(CodeSystemBase):
    """The referral statuses and the transition table between them."""

    kind: Literal["referral-statuses"]
    concept: tuple[ReferralStatus, ...] = Field(min_length=1)
    transitions: tuple[ReferralTransition, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ReferralStatusesDoc:
        codes = {c.code for c in self.concept}
        _unique([c.code for c in self.concept], "status")
        _unique([f"{t.from_}>{t.to}" for t in self.transitions], "transition")
        _known([c for t in self.transitions for c in (t.from_, t.to)], codes, "transition status")
        terminal = {c.code for c in self.concept if c.terminal}
        leaving = {t.from_ for t in self.transitions}
        if bad := sorted(terminal & leaving):
            raise ValueError(f"terminal status(es) with an outgoing transition: {', '.join(bad)}")
        if stuck := sorted(codes - terminal - leaving):
            raise ValueError(f"non-terminal status(es) without a way out: {', '.join(stuck)}")
        return self

    def concepts(self) -> list[ConceptEntry]:
        return [c.entry({"terminal": c.terminal}) for c in self.concept]


# ------------------------------------------------------------------------------- child's plan schema
class PlanSection(_Frozen):
    """A top-level section of the child's plan, labelled for people."""

    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    label: LocalizedText
    description: LocalizedText
    required: bool
    # The data category the section is (from 1.1.0): what a legal basis must cover for it to be shared.
    data_category: str | None = None


class ChildPlanSchemaDoc(DocumentBase):
    """The child's plan as a JSON Schema (draft 2020-12), with bilingual labels of its sections."""

    kind: Literal["child-plan-schema"]
    sections: tuple[PlanSection, ...] = Field(min_length=1)
    json_schema: dict[str, Any] = Field(alias="schema")

    @model_validator(mode="after")
    def _check(self) -> ChildPlanSchemaDoc:
        props = set(self.json_schema.get("properties", {}))
        required = set(self.json_schema.get("required", []))
        _known([s.code for s in self.sections], props, "section (not in the schema's properties)")
        for s in self.sections:
            if s.required != (s.code in required):
                raise ValueError(f"section {s.code!r}: 'required' disagrees with the schema")
        return self

    def section_categories(self) -> dict[str, str]:
        """Each section's data category, for the sections that declare one."""
        return {s.code: s.data_category for s in self.sections if s.data_category is not None}


VocabularyDocument = Annotated[
    WellbeingWheelDoc
    | VariantDoc
    | MyWorldTriangleDoc
    | ResilienceMatrixDoc
    | FiveQuestionsDoc
    | PracticeModelDoc
    | InterventionLevelsDoc
    | CodeSystemDoc
    | OrganisationTypesDoc
    | LegalBasesDoc
    | LifeStagesDoc
    | ReferralStatusesDoc
    | ChildPlanSchemaDoc,
    Field(discriminator="kind"),
]
_DOCUMENT: TypeAdapter[VocabularyDocument] = TypeAdapter(VocabularyDocument)
