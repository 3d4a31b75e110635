"""Plain code systems, organisation types, legal bases, the referral lifecycle and the child's plan schema."""

from __future__ import annotations

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


class LegalBasis(Concept):
    """A legal basis for sharing, with its statute and what it demands of the share."""

    statute: LocalizedText
    breaks_secrecy: bool
    requires_consent: bool
    requires_recorded_assessment: bool
    recipient_organisation_types: tuple[Code, ...] = ()


class LegalBasesDoc(CodeSystemBase):
    """Legal bases for sharing information about a child."""

    kind: Literal["legal-bases"]
    concept: tuple[LegalBasis, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> LegalBasesDoc:
        _unique([c.code for c in self.concept], "concept")
        return self

    def concepts(self) -> list[ConceptEntry]:
        return [
            c.entry(
                {
                    "statute": c.statute,
                    "breaks-secrecy": c.breaks_secrecy,
                    "requires-consent": c.requires_consent,
                    "requires-recorded-assessment": c.requires_recorded_assessment,
                    "recipient-organisation-type": list(c.recipient_organisation_types),
                }
            )
            for c in self.concept
        ]


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
    | ReferralStatusesDoc
    | ChildPlanSchemaDoc,
    Field(discriminator="kind"),
]
_DOCUMENT: TypeAdapter[VocabularyDocument] = TypeAdapter(VocabularyDocument)
