"""The shared vocabulary: versioned code systems, wheel variants with crosswalks, and the child's plan schema.

Everything here is pure: documents arrive as already-parsed ``dict`` objects (the loader in
``hub.vocabulary`` does the file I/O) and are validated into frozen pydantic models. A
:class:`Vocabulary` is the immutable registry the API layers (REST, GraphQL, FHIR) render from.

Errors (all carry ``field``, a JSON pointer or parameter name, and ``detail``)::

    VocabularyError (HubError)
    ├── InvalidVocabulary     a data file is wrong (start-up fails loudly, naming file and field)
    ├── UnknownVocabulary     no vocabulary with that name                       (NotFound)
    ├── UnknownVersion        the vocabulary exists, the version does not        (NotFound)
    ├── UnknownCode           a code is not in the code system it claims         (InvalidInput)
    └── InvalidRequest        e.g. an unsupported language, a system that is no variant (InvalidInput)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.domain.errors import FieldError, HubError, InvalidInput, NotFound

CANONICAL_BASE = "https://vocab.hub.se/fhir"
"""Base of canonical URLs: ``{CANONICAL_BASE}/CodeSystem/<name>``, ``/ConceptMap/…``, ``/ValueSet/…``."""

CANONICAL_WHEEL = "wellbeing-wheel"
"""The name of the canonical wellbeing wheel (SHANARRI) every variant maps onto."""

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
_CODE = r"^[a-z0-9][a-z0-9-]*$"


# ---------------------------------------------------------------------------------------------- errors
class VocabularyError(HubError):
    """Root of vocabulary errors. ``field`` is a JSON pointer (``/map/0/target``) or a parameter name."""

    code = "vocabulary-error"

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(detail, errors=[FieldError(pointer=field, message=detail)])
        self.field = field


class InvalidVocabulary(VocabularyError):
    """A vocabulary file is invalid or contradicts a published version. ``detail`` names the file."""

    code = "invalid-vocabulary"


class UnknownVocabulary(VocabularyError, NotFound):
    """No vocabulary has this name."""

    code = "unknown-vocabulary"


class UnknownVersion(VocabularyError, NotFound):
    """The vocabulary exists but not in this version."""

    code = "unknown-version"


class UnknownCode(VocabularyError, InvalidInput):
    """One or more codes are not defined in the named code system; ``codes`` lists them all."""

    code = "unknown-code"

    def __init__(self, detail: str, *, field: str, codes: Iterable[str]) -> None:
        super().__init__(detail, field=field)
        self.codes = tuple(codes)


# ---------------------------------------------------------------------------------------------- basics
class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class LocalizedText(_Frozen):
    """A human text in Swedish and English; both are required."""

    sv: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, lang: str) -> str:
        """The text in ``lang`` ("sv" or "en")."""
        return self.sv if lang == "sv" else self.en


Code = Annotated[str, Field(pattern=_CODE, max_length=64)]
PropertyValue = str | int | bool | LocalizedText | list[str] | list[int] | list[LocalizedText]


class ConceptEntry(NamedTuple):
    """A concept flattened for rendering (FHIR CodeSystem.concept): code, display, definition, properties."""

    code: str
    display: LocalizedText
    definition: LocalizedText | None
    properties: dict[str, PropertyValue]


class Concept(_Frozen):
    """A coded concept. ``properties`` holds extra values for generic code systems."""

    code: Code
    label: LocalizedText
    description: LocalizedText | None = None
    properties: dict[str, PropertyValue] = Field(default_factory=dict)

    def entry(self, extra: Mapping[str, PropertyValue] | None = None) -> ConceptEntry:
        """This concept as a :class:`ConceptEntry`, with ``extra`` merged into the properties."""
        return ConceptEntry(self.code, self.label, self.description, {**self.properties, **(extra or {})})


class Status(StrEnum):
    """Publication status (FHIR PublicationStatus)."""

    draft = "draft"
    active = "active"
    retired = "retired"


class DocumentBase(_Frozen):
    """Header every vocabulary file declares."""

    name: Annotated[str, Field(pattern=_CODE)]
    version: str
    title: LocalizedText
    description: LocalizedText
    status: Status
    publisher: str = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not SEMVER.match(value):
            raise ValueError(f"version {value!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        return value


class CodeSystemBase(DocumentBase):
    """A vocabulary that is a code system: it has concepts and a canonical URL."""

    @property
    def url(self) -> str:
        """Canonical URL of the code system."""
        return f"{CANONICAL_BASE}/CodeSystem/{self.name}"

    @property
    def value_set_url(self) -> str:
        """Canonical URL of the value set holding every code of the system."""
        return f"{CANONICAL_BASE}/ValueSet/{self.name}"

    def concepts(self) -> list[ConceptEntry]:
        """Every concept, flattened, in document order."""
        raise NotImplementedError

    def codes(self) -> frozenset[str]:
        """Every code of the system."""
        return frozenset(c.code for c in self.concepts())


def _unique(codes: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for code in codes:
        if code in seen:
            raise ValueError(f"duplicate {what} code {code!r}")
        seen.add(code)


def _known(codes: Iterable[str], known: set[str] | frozenset[str], what: str) -> None:
    missing = sorted(set(codes) - set(known))
    if missing:
        raise ValueError(f"unknown {what} code(s): {', '.join(missing)}")


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


def checksum_of(content: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` over the canonical JSON of a parsed file (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_document(content: Mapping[str, Any], *, source: str) -> VocabularyDocument:
    """Validate one parsed file. Raises :class:`InvalidVocabulary` naming ``source`` and the field."""
    try:
        checksum_of(content)
    except (TypeError, ValueError) as exc:
        raise InvalidVocabulary(f"{source}: not plain JSON data ({exc}); quote dates", field="/") from exc
    try:
        return _DOCUMENT.validate_python(content)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc and loc[0] == content.get("kind"):
            loc = loc[1:]
        pointer, message = "/" + "/".join(loc), first["msg"].removeprefix("Value error, ")
        if inner := re.match(r"^(/\S*): (.*)$", message, re.S):  # a validator naming a nested field
            pointer, message = pointer.rstrip("/") + inner[1], inner[2]
        raise InvalidVocabulary(
            f"{source}: {pointer}: {message} ({exc.error_count()} error(s))", field=pointer
        ) from exc


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key for semantic versions (a pre-release sorts before its release)."""
    m = SEMVER.match(version)
    if not m:
        raise ValueError(f"not a semantic version: {version!r}")
    return int(m[1]), int(m[2]), int(m[3]), 0 if m[4] else 1, m[4] or ""


@dataclass(frozen=True)
class LoadedDocument:
    """A validated document with the checksum of its file and where it came from."""

    document: VocabularyDocument
    checksum: str
    source: str


class InvalidRequest(VocabularyError, InvalidInput):
    """A request about the vocabulary is wrong (unknown language, a system that is not a variant…)."""

    code = "invalid-vocabulary-request"


# ------------------------------------------------------------------------------------- the registry
class VocabularyEntry(_Frozen):
    """One published (name, version) in the index."""

    name: str
    version: str
    kind: str
    title: LocalizedText
    status: Status
    checksum: str
    latest: bool
    url: str | None = None


class TranslationMatch(_Frozen):
    """One translation of an input code, with the map's equivalence read in the asked direction."""

    code: str
    display: LocalizedText
    equivalence: Equivalence
    comment: LocalizedText | None = None


class TranslationResult(_Frozen):
    """Every match of one input code; ``matches`` is empty when the code is unmatched."""

    code: str
    matches: tuple[TranslationMatch, ...]


class Translation(_Frozen):
    """The outcome of translating codes through one variant's crosswalk.

    ``source``/``target`` are the canonical URLs of the systems the codes come from and go to
    (reversed when ``reverse`` is true). ``unmatched`` lists, explicitly, every input code with no match.
    """

    variant: str
    variant_version: str
    concept_map: str
    reverse: bool
    source: str
    source_version: str
    target: str
    target_version: str
    results: tuple[TranslationResult, ...]
    unmatched: tuple[str, ...]


def localize(value: Any, lang: str) -> Any:
    """Collapse every ``{"sv": …, "en": …}`` in JSON-ready data to ``lang``; ``schema`` values stay."""
    if isinstance(value, dict):
        if value.keys() == {"sv", "en"} and all(isinstance(v, str) for v in value.values()):
            return value[lang]
        return {k: v if k == "schema" else localize(v, lang) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, lang) for v in value]
    return value


_localize = localize  # kept for callers that imported the private name


class Vocabulary:
    """The loaded, validated, immutable registry of every vocabulary version.

    Build it from :class:`LoadedDocument` objects (``hub.vocabulary.load_vocabulary`` does). Construction
    checks what single files cannot: a (name, version) published twice with different content, and
    every crosswalk's target system, version and codes.
    """

    def __init__(self, documents: Iterable[LoadedDocument]) -> None:
        by_name: dict[str, dict[str, LoadedDocument]] = {}
        for loaded in documents:
            doc = loaded.document
            versions = by_name.setdefault(doc.name, {})
            if (seen := versions.get(doc.version)) is not None:
                if seen.checksum != loaded.checksum:
                    raise InvalidVocabulary(
                        f"{loaded.source}: {doc.name} {doc.version} is already published by {seen.source} "
                        "with different content; published versions never change, publish a new version",
                        field="/version",
                    )
                continue
            versions[doc.version] = loaded
        self._docs: Mapping[str, Mapping[str, LoadedDocument]] = MappingProxyType(
            {
                n: MappingProxyType(dict(sorted(v.items(), key=lambda kv: semver_key(kv[0]))))
                for n, v in sorted(by_name.items())
            }
        )
        self._latest: Mapping[str, str] = MappingProxyType({n: self._pick_latest(v) for n, v in self._docs.items()})
        for published in self._docs.values():
            for loaded in published.values():
                if isinstance(loaded.document, VariantDoc):
                    self._check_map(loaded)

    @staticmethod
    def _pick_latest(versions: Mapping[str, LoadedDocument]) -> str:
        active = [v for v, d in versions.items() if d.document.status is Status.active]
        return (active or list(versions))[-1]

    def _check_map(self, loaded: LoadedDocument) -> None:
        doc = loaded.document
        assert isinstance(doc, VariantDoc)
        spec = doc.map
        target = self._docs.get(spec.target, {}).get(spec.target_version)
        if target is None or not isinstance(target.document, CodeSystemBase):
            raise InvalidVocabulary(
                f"{loaded.source}: /map: target code system {spec.target} {spec.target_version} is not published",
                field="/map/target_version",
            )
        known = target.document.codes()
        for i, element in enumerate(spec.elements):
            for j, t in enumerate(element.targets):
                if t.code is not None and t.code not in known:
                    pointer = f"/map/elements/{i}/targets/{j}/code"
                    raise InvalidVocabulary(
                        f"{loaded.source}: {pointer}: {t.code!r} is not a code of {spec.target} {spec.target_version}",
                        field=pointer,
                    )

    # -- lookup
    def _loaded(self, name: str, version: str | None = None) -> LoadedDocument:
        versions = self._docs.get(name)
        if versions is None:
            raise UnknownVocabulary(f"no vocabulary named {name!r}", field="name")
        found: LoadedDocument | None = versions.get(version or self._latest[name])
        if found is None:
            raise UnknownVersion(
                f"{name} has no version {version!r} (published: {', '.join(versions)})", field="version"
            )
        return found

    def names(self) -> list[str]:
        """Every vocabulary name, sorted."""
        return list(self._docs)

    def versions(self, name: str) -> list[str]:
        """Every published version of ``name``, oldest first."""
        self._loaded(name)
        return list(self._docs[name])

    def latest_version(self, name: str) -> str:
        """The version :meth:`get` returns when no version is given."""
        self._loaded(name)
        return self._latest[name]

    def index(self) -> list[VocabularyEntry]:
        """One entry per (name, version), sorted by name and version."""
        return [
            VocabularyEntry(
                name=n,
                version=v,
                kind=d.document.kind,
                title=d.document.title,
                status=d.document.status,
                checksum=d.checksum,
                latest=self._latest[n] == v,
                url=d.document.url if isinstance(d.document, CodeSystemBase) else None,
            )
            for n, versions in self._docs.items()
            for v, d in versions.items()
        ]

    def get(self, name: str, version: str | None = None) -> VocabularyDocument:
        """The document ``name`` in ``version`` (the latest when None)."""
        return self._loaded(name, version).document

    def checksum(self, name: str, version: str | None = None) -> str:
        """``sha256:<hex>`` of the published file."""
        return self._loaded(name, version).checksum

    def document_json(self, name: str, version: str | None = None, lang: str | None = None) -> dict[str, Any]:
        """JSON-ready content; with ``lang`` "sv" or "en" every bilingual text collapses to that language."""
        if lang not in (None, "sv", "en"):
            raise InvalidRequest(f"unsupported language {lang!r}; use 'sv' or 'en'", field="lang")
        doc = self.get(name, version)
        data: dict[str, Any] = doc.model_dump(mode="json", by_alias=True)
        if isinstance(doc, CodeSystemBase):
            data["url"] = doc.url
        if isinstance(doc, VariantDoc):
            data["concept_map_url"] = doc.concept_map_url
        return data if lang is None else dict(localize(data, lang))

    def codes(self, name: str, version: str | None = None) -> frozenset[str]:
        """Every code of a code-system vocabulary (e.g. ``codes("data-categories")``)."""
        doc = self.get(name, version)
        if not isinstance(doc, CodeSystemBase):
            raise InvalidRequest(f"{name} is not a code system", field="name")
        return doc.codes()

    def indicator_codes(self, version: str | None = None) -> frozenset[str]:
        """The eight canonical wellbeing indicator codes (without the goals)."""
        doc = self.get(CANONICAL_WHEEL, version)
        assert isinstance(doc, WellbeingWheelDoc)
        return doc.indicator_codes()

    def referral_transitions(self, version: str | None = None) -> list[ReferralTransition]:
        """The referral status transition table."""
        doc = self.get("referral-statuses", version)
        assert isinstance(doc, ReferralStatusesDoc)
        return list(doc.transitions)

    # -- variants and translation
    def variants(self) -> list[VariantDoc]:
        """The latest version of every wheel variant, by name."""
        return [d for n in self._docs if isinstance(d := self.get(n), VariantDoc)]

    def variant(self, system: str, version: str | None = None) -> VariantDoc:
        """A variant by name or canonical URL (CodeSystem or ConceptMap)."""
        name = system.rsplit("/", 1)[-1] if system.startswith(CANONICAL_BASE + "/") else system
        doc = self._loaded(name, version).document
        if not isinstance(doc, VariantDoc):
            raise InvalidRequest(f"{name} is not a wheel variant", field="system")
        return doc

    def crosswalk(self, variant_name: str, version: str | None = None) -> ConceptMapSpec:
        """The crosswalk of a variant onto the canonical wheel."""
        return self.variant(variant_name, version).map

    def translate(
        self, *, system: str, codes: list[str], reverse: bool = False, version: str | None = None
    ) -> Translation:
        """Translate ``codes`` through a variant's crosswalk.

        Forward: variant codes → target (canonical wheel) codes. Reverse: target codes → variant codes,
        with each equivalence inverted (wider ↔ narrower, subsumes ↔ specializes). Every input code gets
        *all* its matches; unmatched/disjoint mappings never translate, and codes without a match are
        listed in ``unmatched``. Codes unknown to the source system raise :class:`UnknownCode`.
        """
        variant = self.variant(system, version)
        spec = variant.map
        target = self.get(spec.target, spec.target_version)
        assert isinstance(target, CodeSystemBase)
        variant_display = {c.code: c.display for c in variant.concepts()}
        target_display = {c.code: c.display for c in target.concepts()}
        index: dict[str, list[TranslationMatch]] = {}
        for element in spec.elements:
            for t in element.targets:
                if t.code is None or not t.equivalence.translates:
                    continue
                if reverse:
                    key, match = (
                        t.code,
                        TranslationMatch(
                            code=element.source,
                            display=variant_display[element.source],
                            equivalence=t.equivalence.inverse(),
                            comment=t.comment,
                        ),
                    )
                else:
                    key, match = (
                        element.source,
                        TranslationMatch(
                            code=t.code,
                            display=target_display[t.code],
                            equivalence=t.equivalence,
                            comment=t.comment,
                        ),
                    )
                index.setdefault(key, []).append(match)
        known = target_display if reverse else variant_display
        unknown = [(i, c) for i, c in enumerate(codes) if c not in known]
        if unknown:
            src = spec.target if reverse else variant.name
            raise UnknownCode(
                f"not code(s) of {src}: {', '.join(c for _, c in unknown)}",
                field=f"/codes/{unknown[0][0]}",
                codes=[c for _, c in unknown],
            )
        results = tuple(TranslationResult(code=c, matches=tuple(index.get(c, ()))) for c in codes)
        unmatched = tuple(dict.fromkeys(r.code for r in results if not r.matches))
        variant_side = (variant.url, variant.version)
        target_side = (target.url, target.version)
        if reverse:
            variant_side, target_side = target_side, variant_side
        (src_url, src_v), (tgt_url, tgt_v) = variant_side, target_side
        return Translation(
            variant=variant.name,
            variant_version=variant.version,
            concept_map=variant.concept_map_url,
            reverse=reverse,
            source=src_url,
            source_version=src_v,
            target=tgt_url,
            target_version=tgt_v,
            results=results,
            unmatched=unmatched,
        )
