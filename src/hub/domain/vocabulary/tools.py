"""The deeper assessment tools (My World triangle, resilience matrix, five questions, practice model)
and the intervention levels with TABB-Trappan."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from hub.domain.vocabulary.base import (
    _CODE,
    Code,
    CodeSystemBase,
    Concept,
    ConceptEntry,
    LocalizedText,
    _Frozen,
    _known,
    _unique,
)


# ------------------------------------------------------------------------- deeper assessment tools
class TriangleSide(Concept):
    """A side of the My World Triangle with its seven areas."""

    areas: tuple[Concept, ...] = Field(min_length=1)


class MyWorldTriangleDoc(CodeSystemBase):
    """The My World Triangle: three sides of areas."""

    kind: Literal["my-world-triangle"]
    sides: tuple[TriangleSide, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> MyWorldTriangleDoc:
        _unique([c.code for c in self.concepts()], "concept")
        return self

    def concepts(self) -> list[ConceptEntry]:
        out: list[ConceptEntry] = []
        for side in self.sides:
            out.append(side.entry({"concept-kind": "side"}))
            out += [a.entry({"concept-kind": "area", "parent": side.code}) for a in side.areas]
        return out


class Axis(Concept):
    """An axis of the resilience matrix with its two poles."""

    poles: tuple[Concept, Concept]


class Quadrant(Concept):
    """A quadrant, named by one pole of each axis."""

    poles: tuple[Code, Code]


class ResilienceMatrixDoc(CodeSystemBase):
    """The resilience matrix: two axes and the four quadrants they span."""

    kind: Literal["resilience-matrix"]
    axes: tuple[Axis, Axis]
    quadrants: tuple[Quadrant, ...] = Field(min_length=4, max_length=4)

    @model_validator(mode="after")
    def _check(self) -> ResilienceMatrixDoc:
        _unique([c.code for c in self.concepts()], "concept")
        for q in self.quadrants:
            for axis, pole in zip(self.axes, q.poles, strict=True):
                _known([pole], {p.code for p in axis.poles}, f"pole of axis {axis.code!r} in {q.code!r}")
        return self

    def concepts(self) -> list[ConceptEntry]:
        out: list[ConceptEntry] = []
        for axis in self.axes:
            out.append(axis.entry({"concept-kind": "axis"}))
            out += [p.entry({"concept-kind": "pole", "parent": axis.code}) for p in axis.poles]
        out += [q.entry({"concept-kind": "quadrant", "pole": list(q.poles)}) for q in self.quadrants]
        return out


class PractitionerQuestion(Concept):
    """One of the five questions; ``involves_other_agencies`` marks the one leading to a shared plan."""

    number: int = Field(ge=1)
    involves_other_agencies: bool = False


class FiveQuestionsDoc(CodeSystemBase):
    """The five questions a practitioner asks."""

    kind: Literal["five-questions"]
    question: tuple[PractitionerQuestion, ...] = Field(min_length=1)

    def concepts(self) -> list[ConceptEntry]:
        return [
            q.entry({"number": q.number, "involves-other-agencies": q.involves_other_agencies}) for q in self.question
        ]


class PracticeStep(Concept):
    """A step of the practice model; ``tool`` names the vocabulary used in the step, if any."""

    number: int = Field(ge=1)
    tool: Annotated[str, Field(pattern=_CODE)] | None = None


class PracticeModelDoc(CodeSystemBase):
    """The practice model's steps, in order."""

    kind: Literal["practice-model-steps"]
    step: tuple[PracticeStep, ...] = Field(min_length=1)

    def concepts(self) -> list[ConceptEntry]:
        return [s.entry({"number": s.number, **({"tool": s.tool} if s.tool else {})}) for s in self.step]


# ------------------------------------------------------------------------------ intervention levels
class LevelRelation(_Frozen):
    """Which prevention level(s) a TABB step corresponds to."""

    step: Code
    levels: tuple[Code, ...] = Field(min_length=1)
    note: LocalizedText


class TabbStep(Concept):
    """A step of TABB-Trappan; ``critical`` marks step 2."""

    number: int = Field(ge=0)
    critical: bool = False


class InterventionLevelsDoc(CodeSystemBase):
    """Prevention levels, TABB-Trappan steps and the relation between the two scales."""

    kind: Literal["intervention-levels"]
    prevention_levels: tuple[Concept, ...] = Field(min_length=1)
    steps: tuple[TabbStep, ...] = Field(min_length=1)
    relations: tuple[LevelRelation, ...]

    @model_validator(mode="after")
    def _check(self) -> InterventionLevelsDoc:
        _unique([c.code for c in self.concepts()], "concept")
        _unique([r.step for r in self.relations], "relation step")
        steps = {s.code for s in self.steps}
        _known([r.step for r in self.relations], steps, "relation step")
        _known(steps, {r.step for r in self.relations}, "step without a relation; the")
        _known(
            [lv for r in self.relations for lv in r.levels],
            {p.code for p in self.prevention_levels},
            "prevention level",
        )
        return self

    def concepts(self) -> list[ConceptEntry]:
        rel = {r.step: r for r in self.relations}
        out = [p.entry({"scale": "prevention-level"}) for p in self.prevention_levels]
        out += [
            s.entry(
                {
                    "scale": "tabb-step",
                    "number": s.number,
                    "critical": s.critical,
                    "prevention-level": list(rel[s.code].levels),
                    "relation-note": rel[s.code].note,
                }
            )
            for s in self.steps
        ]
        return out
