"""The wellbeing wheel (SHANARRI) and local wheel variants with their crosswalks."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from hub.domain.vocabulary.base import (
    _CODE,
    CANONICAL_BASE,
    CANONICAL_WHEEL,
    Code,
    CodeSystemBase,
    Concept,
    ConceptEntry,
    LocalizedText,
    _Frozen,
    _known,
    _unique,
)


# ------------------------------------------------------------------------------------ wellbeing wheel
class ConversationQuestions(_Frozen):
    """Questions that open a conversation about one indicator, per audience."""

    child: tuple[LocalizedText, ...] = Field(min_length=1)
    guardian: tuple[LocalizedText, ...] = Field(min_length=1)
    professional: tuple[LocalizedText, ...] = Field(min_length=1)


class Indicator(Concept):
    """A SHANARRI wellbeing indicator with its UN CRC articles and conversation questions."""

    crc_articles: tuple[Annotated[int, Field(ge=1, le=54)], ...] = Field(min_length=1)
    questions: ConversationQuestions


class Goal(Concept):
    """One of the four overarching goals and the indicators it surrounds."""

    indicators: tuple[Code, ...] = Field(min_length=1)


class WellbeingWheelDoc(CodeSystemBase):
    """The canonical wellbeing wheel: eight indicators and four goals around them."""

    kind: Literal["wellbeing-wheel"]
    indicators: tuple[Indicator, ...] = Field(min_length=1)
    goals: tuple[Goal, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> WellbeingWheelDoc:
        _unique([c.code for c in (*self.indicators, *self.goals)], "concept")
        codes = {i.code for i in self.indicators}
        for goal in self.goals:
            _known(goal.indicators, codes, f"indicator in goal {goal.code!r}")
        if self.goals:
            _known(codes, {c for g in self.goals for c in g.indicators}, "indicator under no goal; the")
        return self

    def indicator_codes(self) -> frozenset[str]:
        """The indicator codes only (not the goals)."""
        return frozenset(i.code for i in self.indicators)

    def concepts(self) -> list[ConceptEntry]:
        goals_of = {i.code: [g.code for g in self.goals if i.code in g.indicators] for i in self.indicators}
        out = [
            i.entry(
                {
                    "concept-kind": "indicator",
                    "crc-article": list(i.crc_articles),
                    "goal": goals_of[i.code],
                    "question-child": list(i.questions.child),
                    "question-guardian": list(i.questions.guardian),
                    "question-professional": list(i.questions.professional),
                }
            )
            for i in self.indicators
        ]
        out += [g.entry({"concept-kind": "goal", "indicator": list(g.indicators)}) for g in self.goals]
        return out


# ------------------------------------------------------------------------------- variants and crosswalks
class Equivalence(StrEnum):
    """FHIR R4 ConceptMapEquivalence: how the target relates to the source."""

    relatedto = "relatedto"
    equivalent = "equivalent"
    equal = "equal"
    wider = "wider"
    subsumes = "subsumes"
    narrower = "narrower"
    specializes = "specializes"
    inexact = "inexact"
    unmatched = "unmatched"
    disjoint = "disjoint"

    @property
    def translates(self) -> bool:
        """Whether a mapping with this equivalence is a translation (unmatched/disjoint never are)."""
        return self not in (Equivalence.unmatched, Equivalence.disjoint)

    def inverse(self) -> Equivalence:
        """The equivalence read in the other direction (wider ↔ narrower, subsumes ↔ specializes)."""
        return _INVERSE.get(self, self)


_INVERSE = {
    Equivalence.wider: Equivalence.narrower,
    Equivalence.narrower: Equivalence.wider,
    Equivalence.subsumes: Equivalence.specializes,
    Equivalence.specializes: Equivalence.subsumes,
}


class MapTarget(_Frozen):
    """One target of a source code. ``code`` is absent only when ``equivalence`` is ``unmatched``."""

    code: Code | None = None
    equivalence: Equivalence
    comment: LocalizedText | None = None

    @model_validator(mode="after")
    def _check(self) -> MapTarget:
        if (self.code is None) != (self.equivalence is Equivalence.unmatched):
            raise ValueError("a target has a code unless (and only unless) its equivalence is 'unmatched'")
        if self.equivalence is not Equivalence.equal and self.equivalence is not Equivalence.equivalent:
            if self.comment is None:
                raise ValueError(f"equivalence {self.equivalence.value!r} needs a comment saying why")
        return self


class MapElement(_Frozen):
    """All targets of one source code."""

    source: Code
    targets: tuple[MapTarget, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> MapElement:
        _unique([t.code for t in self.targets if t.code], f"target of {self.source!r}")
        return self


class ConceptMapSpec(_Frozen):
    """A crosswalk from the variant (source) onto a target code system in a fixed version."""

    target: Annotated[str, Field(pattern=_CODE)] = CANONICAL_WHEEL
    target_version: str
    elements: tuple[MapElement, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ConceptMapSpec:
        _unique([e.source for e in self.elements], "source")
        return self


class VariantDoc(CodeSystemBase):
    """A local wheel (own code system) and its crosswalk onto the canonical wheel, in one file."""

    kind: Literal["wheel-variant"]
    region: str | None = None
    concept: tuple[Concept, ...] = Field(min_length=1)
    map: ConceptMapSpec

    @model_validator(mode="after")
    def _check(self) -> VariantDoc:
        if not self.name.startswith("variant-"):
            raise ValueError("a variant's name starts with 'variant-'")
        _unique([c.code for c in self.concept], "concept")
        codes = {c.code for c in self.concept}
        for i, element in enumerate(self.map.elements):
            if element.source not in codes:
                raise ValueError(f"/map/elements/{i}/source: unknown map source code {element.source!r}")
        return self

    @property
    def concept_map_url(self) -> str:
        """Canonical URL of the crosswalk (FHIR ConceptMap)."""
        return f"{CANONICAL_BASE}/ConceptMap/{self.name}"

    def concepts(self) -> list[ConceptEntry]:
        return [c.entry() for c in self.concept]
