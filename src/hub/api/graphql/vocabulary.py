"""The vocabulary's GraphQL types, labels in the language asked for (``Lang``)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from hub.domain.vocabulary import ConceptEntry, LocalizedText, VariantDoc


@strawberry.enum(description="Label language")
class Lang(Enum):
    sv = "sv"
    en = "en"


LangArg = Annotated[Lang, strawberry.argument(description="Language of labels and descriptions")]


def localized(text: LocalizedText | None, lang: Lang) -> str | None:
    return None if text is None else text.get(lang.value)


@strawberry.type(description="One published version of a vocabulary")
class VocabularyEntry:
    name: str
    version: str
    kind: str
    title: str
    checksum: str
    latest: bool
    url: str | None


@strawberry.type
class ConceptProperty:
    code: str
    value: JSON


@strawberry.type(description="A coded concept")
class Concept:
    code: str
    display: str
    definition: str | None
    properties: list[ConceptProperty]


def _value(value: Any, lang: Lang) -> Any:
    if isinstance(value, LocalizedText):
        return value.get(lang.value)
    if isinstance(value, list | tuple):
        return [_value(v, lang) for v in value]
    return value


def concept(entry: ConceptEntry, lang: Lang) -> Concept:
    return Concept(
        code=entry.code,
        display=entry.display.get(lang.value),
        definition=localized(entry.definition, lang),
        properties=[ConceptProperty(code=k, value=_value(v, lang)) for k, v in sorted(entry.properties.items())],
    )


@strawberry.type(description="A code system of the shared vocabulary")
class CodeSystem:
    name: str
    version: str
    url: str
    title: str
    description: str
    concepts: list[Concept]


@strawberry.type
class Questions:
    child: list[str]
    guardian: list[str]
    professional: list[str]


@strawberry.type(description="A SHANARRI wellbeing indicator")
class Indicator:
    code: str
    label: str
    description: str | None
    crc_articles: list[int]
    questions: Questions
    goals: list[str]


@strawberry.type(description="An overarching goal and the indicators it surrounds")
class Goal:
    code: str
    label: str
    description: str | None
    indicators: list[str]


@strawberry.type(description="The canonical wellbeing wheel")
class WellbeingWheel:
    version: str
    url: str
    indicators: list[Indicator]
    goals: list[Goal]


@strawberry.type
class MapTarget:
    code: str | None
    display: str | None
    equivalence: str
    comment: str | None


@strawberry.type
class MapElement:
    source: str
    display: str
    targets: list[MapTarget]


@strawberry.type(description="A local wheel variant with its crosswalk onto the canonical wheel")
class WheelVariant:
    name: str
    version: str
    url: str
    concept_map_url: str
    title: str
    target: str
    target_version: str
    elements: list[MapElement]


@strawberry.type
class TranslationMatch:
    code: str
    display: str
    equivalence: str
    comment: str | None


@strawberry.type
class TranslationResult:
    code: str
    matches: list[TranslationMatch]


@strawberry.type(description="Codes translated through a crosswalk; `unmatched` lists codes with no match")
class Translation:
    variant: str
    reverse: bool
    source: str
    target: str
    results: list[TranslationResult]
    unmatched: list[str]


def variant(
    v: VariantDoc, lang: Lang, own: dict[str, LocalizedText], target_display: dict[str, LocalizedText]
) -> WheelVariant:
    return WheelVariant(
        name=v.name,
        version=v.version,
        url=v.url,
        concept_map_url=v.concept_map_url,
        title=v.title.get(lang.value),
        target=v.map.target,
        target_version=v.map.target_version,
        elements=[
            MapElement(
                source=e.source,
                display=own[e.source].get(lang.value),
                targets=[
                    MapTarget(
                        code=t.code,
                        display=target_display[t.code].get(lang.value) if t.code else None,
                        equivalence=t.equivalence.value,
                        comment=localized(t.comment, lang),
                    )
                    for t in e.targets
                ],
            )
            for e in v.map.elements
        ],
    )
