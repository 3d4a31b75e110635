"""Common ground of the vocabulary: canonical URLs, errors, the frozen base models."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
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
