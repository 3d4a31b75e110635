"""The shared vocabulary as FHIR R4 (4.0.1) resources: plain, JSON-ready ``dict`` objects.

Pure functions over the domain models in ``hub.domain.vocabulary``; no I/O, no web. Each resource is
rendered in one language (``lang``, "sv" or "en"): ``language``, titles, displays and definitions are
in that language, and every concept carries a ``designation`` with its display in the other one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from hub.domain.vocabulary import (
    CodeSystemBase,
    ConceptEntry,
    DocumentBase,
    Equivalence,
    LocalizedText,
    PropertyValue,
    Translation,
    VariantDoc,
)

FHIR_VERSION = "4.0.1"
FHIR_PATH = "/fhir/r4"
LANGUAGES = ("sv", "en")
DESIGNATION_USAGE = "http://terminology.hl7.org/CodeSystem/designation-usage"
TRANSLATE_OPERATION = "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate"
JURISDICTION = [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "SE", "display": "Sweden"}]}]
# Equivalences for which R4 invariant cmd-1 demands a comment.
_NEEDS_COMMENT = {Equivalence.narrower, Equivalence.inexact}

_PROPERTY_TEXT: dict[str, LocalizedText] = {
    name: LocalizedText(sv=sv, en=en)
    for name, sv, en in [
        ("concept-kind", "Vilket slags begrepp koden är", "What kind of concept the code is"),
        (
            "crc-article",
            "Artikel i barnkonventionen",
            "Article of the UN Convention on the Rights of the Child",
        ),
        ("goal", "Övergripande mål som indikatorn hör till", "Overarching goal the indicator belongs to"),
        ("indicator", "Indikator som målet omfattar", "Indicator the goal surrounds"),
        ("question-child", "Samtalsfråga till barnet", "Conversation question for the child"),
        ("question-guardian", "Samtalsfråga till vårdnadshavare", "Conversation question for the guardian"),
        ("question-professional", "Fråga för yrkespersonen", "Question for the professional"),
        ("parent", "Överordnat begrepp", "Parent concept"),
        ("pole", "Pol som begreppet utgår från", "Pole the concept is built from"),
        ("number", "Ordningsnummer", "Ordinal number"),
        ("tool", "Vokabulär som används i steget", "Vocabulary used in the step"),
        ("scale", "Skala som koden hör till", "Scale the code belongs to"),
        ("critical", "Kritiskt steg", "Critical step"),
        ("prevention-level", "Motsvarande preventionsnivå", "Corresponding prevention level"),
        (
            "relation-note",
            "Kommentar till relationen mellan skalorna",
            "Note on the relation between the scales",
        ),
        ("sector", "Sektor vars sekretessregler gäller", "Sector whose secrecy rules apply"),
        ("statute", "Författning", "Statute"),
        ("breaks-secrecy", "Bryter sekretess", "Breaks secrecy"),
        ("requires-consent", "Kräver samtycke", "Requires consent"),
        ("requires-recorded-assessment", "Kräver dokumenterad bedömning", "Requires a recorded assessment"),
        (
            "recipient-organisation-type",
            "Tillåten mottagande organisationstyp",
            "Allowed recipient organisation type",
        ),
        ("involves-other-agencies", "Involverar andra verksamheter", "Involves other agencies"),
        ("terminal", "Slutstatus", "Terminal status"),
        (
            "expected-end-age",
            "Skedet väntas sluta det år barnet fyller",
            "The stage is expected to end in the year the child turns",
        ),
    ]
}


def other_language(lang: str) -> str:
    """The language a designation carries when rendering in ``lang``."""
    return "en" if lang == "sv" else "sv"


def computer_name(name: str) -> str:
    """A FHIR computer-friendly ``name`` (PascalCase): ``variant-x`` → ``VariantX``."""
    pascal = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)
    return pascal if pascal[:1].isalpha() else "V" + pascal


def resource_url(base_url: str, resource_type: str, resource_id: str) -> str:
    """Where this hub serves a resource (``{base_url}/fhir/r4/{type}/{id}``)."""
    return f"{base_url.rstrip('/')}{FHIR_PATH}/{resource_type}/{resource_id}"


def concept_map_id(variant: VariantDoc) -> str:
    """The ConceptMap's id: the variant's name, the last segment of its canonical ``concept_map_url``."""
    return variant.concept_map_url.rsplit("/", 1)[-1]


def _header(
    resource_type: str, rid: str, url: str, doc: DocumentBase, lang: str, *, name: str | None = None
) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "id": rid,
        # A published (name, version) never changes, so it doubles as the resource version (vread).
        "meta": {"versionId": doc.version},
        "language": lang,
        "url": url,
        "version": doc.version,
        "name": computer_name(name or rid),
        "title": doc.title.get(lang),
        "status": doc.status.value,
        "experimental": False,
        "publisher": doc.publisher,
        "description": doc.description.get(lang),
        "jurisdiction": JURISDICTION,
    }


def _designation(text: LocalizedText, lang: str) -> list[dict[str, Any]]:
    other = other_language(lang)
    usage = {"system": DESIGNATION_USAGE, "code": "display"}
    return [{"language": other, "use": usage, "value": text.get(other)}]


# ------------------------------------------------------------------------------------------ CodeSystem
def _flat(value: PropertyValue) -> list[str | int | bool | LocalizedText]:
    return list(value) if isinstance(value, list) else [value]


def _property_types(concepts: Sequence[ConceptEntry], codes: frozenset[str]) -> dict[str, str]:
    """Infer a FHIR property type per property name; ``code`` only for codes of this very system."""
    values: dict[str, list[Any]] = {}
    for concept in concepts:
        for name, value in concept.properties.items():
            values.setdefault(name, []).extend(_flat(value))
    types: dict[str, str] = {}
    for name, vals in values.items():
        if vals and all(isinstance(v, bool) for v in vals):
            types[name] = "boolean"
        elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            types[name] = "integer"
        elif vals and all(isinstance(v, str) and v in codes for v in vals):
            types[name] = "code"
        else:
            types[name] = "string"
    return types


_VALUE_KEY = {
    "boolean": "valueBoolean",
    "integer": "valueInteger",
    "code": "valueCode",
    "string": "valueString",
}


def _property_value(value: str | int | bool | LocalizedText, ptype: str, lang: str) -> Any:
    if isinstance(value, LocalizedText):
        return value.get(lang)
    if ptype == "string" and not isinstance(value, str):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return value


def _concept(entry: ConceptEntry, types: Mapping[str, str], lang: str) -> dict[str, Any]:
    out: dict[str, Any] = {"code": entry.code, "display": entry.display.get(lang)}
    if entry.definition is not None:
        out["definition"] = entry.definition.get(lang)
    out["designation"] = _designation(entry.display, lang)
    props = [
        {"code": name, _VALUE_KEY[types[name]]: _property_value(v, types[name], lang)}
        for name, value in entry.properties.items()
        for v in _flat(value)
    ]
    if props:
        out["property"] = props
    return out


def code_system(doc: CodeSystemBase, lang: str) -> dict[str, Any]:
    """A complete FHIR ``CodeSystem`` with every concept, its properties and the other language."""
    concepts = doc.concepts()
    types = _property_types(concepts, doc.codes())
    resource = _header("CodeSystem", doc.name, doc.url, doc, lang)
    resource.update({"caseSensitive": True, "valueSet": doc.value_set_url, "content": "complete"})
    resource["count"] = len(concepts)
    if types:
        resource["property"] = [
            {
                "code": name,
                **({"description": _PROPERTY_TEXT[name].get(lang)} if name in _PROPERTY_TEXT else {}),
                "type": ptype,
            }
            for name, ptype in types.items()
        ]
    resource["concept"] = [_concept(c, types, lang) for c in concepts]
    return resource


# -------------------------------------------------------------------------------------------- ValueSet
def value_set(doc: CodeSystemBase, lang: str, *, expanded_at: datetime | None = None) -> dict[str, Any]:
    """The ``ValueSet`` of every code of ``doc`` (its whole system in its version).

    With ``expanded_at`` (when the expansion is produced; FHIR requires it) the resource also holds an
    ``expansion`` listing every code; without it the output is byte-stable (used by the export).
    """
    resource = _header("ValueSet", doc.name, doc.value_set_url, doc, lang)
    resource["immutable"] = True
    resource["compose"] = {"include": [{"system": doc.url, "version": doc.version}]}
    if expanded_at is not None:
        concepts = doc.concepts()
        resource["expansion"] = {
            "identifier": f"{doc.value_set_url}|{doc.version}#expansion-{lang}",
            "timestamp": expanded_at.isoformat(timespec="seconds"),
            "total": len(concepts),
            "offset": 0,
            "contains": [
                {
                    "system": doc.url,
                    "version": doc.version,
                    "code": c.code,
                    "display": c.display.get(lang),
                    "designation": _designation(c.display, lang),
                }
                for c in concepts
            ],
        }
    return resource


# ------------------------------------------------------------------------------------------ ConceptMap
def _generated_comment(equivalence: Equivalence, lang: str) -> str:
    if lang == "sv":
        return f"Översättningen är '{equivalence.value}', inte likvärdig; kontrollera innebörden."
    return f"The mapping is '{equivalence.value}', not equivalent; check the meaning."


def concept_map(variant: VariantDoc, target: CodeSystemBase, lang: str) -> dict[str, Any]:
    """The variant's crosswalk onto ``target`` (the map's target system in its ``target_version``).

    Every concept of the variant appears as an element: a concept the map does not mention is rendered
    as explicitly ``unmatched``, like an element whose target has no code. Narrower and inexact targets
    always carry a comment (R4 invariant cmd-1).
    """
    spec = variant.map
    if target.name != spec.target or target.version != spec.target_version:
        raise ValueError(
            f"{variant.name} maps onto {spec.target} {spec.target_version}, not {target.name} {target.version}"
        )
    source_display = {c.code: c.display for c in variant.concepts()}
    target_display = {c.code: c.display for c in target.concepts()}
    mapped = {e.source: e for e in spec.elements}
    elements: list[dict[str, Any]] = []
    for code, display in source_display.items():
        element: dict[str, Any] = {"code": code, "display": display.get(lang), "target": []}
        map_element = mapped.get(code)
        if map_element is None:
            no_map = "Ingen översättning är angiven." if lang == "sv" else "No mapping is declared."
            element["target"].append({"equivalence": Equivalence.unmatched.value, "comment": no_map})
        else:
            for t in map_element.targets:
                out: dict[str, Any] = {}
                if t.code is not None:
                    out.update(code=t.code, display=target_display[t.code].get(lang))
                out["equivalence"] = t.equivalence.value
                if t.comment is not None:
                    out["comment"] = t.comment.get(lang)
                elif t.equivalence in _NEEDS_COMMENT:
                    out["comment"] = _generated_comment(t.equivalence, lang)
                element["target"].append(out)
        elements.append(element)
    resource = _header(
        "ConceptMap",
        concept_map_id(variant),
        variant.concept_map_url,
        variant,
        lang,
        name=f"{variant.name}-to-{target.name}",
    )
    what = "Översättning från" if lang == "sv" else "Crosswalk from"
    onto = "till" if lang == "sv" else "onto"
    resource["title"] = f"{what} {variant.title.get(lang)} {onto} {target.title.get(lang)}"
    resource["sourceCanonical"] = f"{variant.value_set_url}|{variant.version}"
    resource["targetCanonical"] = f"{target.value_set_url}|{target.version}"
    resource["group"] = [
        {
            "source": variant.url,
            "sourceVersion": variant.version,
            "target": target.url,
            "targetVersion": target.version,
            "element": elements,
        }
    ]
    return resource


# ------------------------------------------------------------------------------- server-level resources
def searchset_bundle(
    resources: Iterable[Mapping[str, Any]], base_url: str, *, self_url: str | None = None
) -> dict[str, Any]:
    """A ``searchset`` Bundle of ``resources``; each entry's fullUrl is where this hub serves it."""
    entries = [
        {
            "fullUrl": resource_url(base_url, r["resourceType"], r["id"]),
            "resource": dict(r),
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    if self_url:
        bundle["link"] = [{"relation": "self", "url": self_url}]
    bundle["entry"] = entries
    return bundle


def translate_parameters(translation: Translation, lang: str) -> dict[str, Any]:
    """The ``$translate`` output: ``result``, a ``message`` and one ``match`` per match.

    The message names unmatched codes and, as R4 allows when ``result`` is true, carries the map's
    comment on every match that is not equal or equivalent (``match`` itself has no place for it).
    """
    matches = [(r.code, m) for r in translation.results for m in r.matches]
    params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": bool(matches)}]
    notes: list[str] = []
    if translation.unmatched:
        codes = ", ".join(translation.unmatched)
        notes.append(
            f"Ingen översättning för {codes} i {translation.concept_map}."
            if lang == "sv"
            else f"No translation for {codes} in {translation.concept_map}."
        )
    for source, m in matches:
        if m.comment is not None and m.equivalence not in (Equivalence.equal, Equivalence.equivalent):
            notes.append(f"{source} → {m.code} ({m.equivalence.value}): {m.comment.get(lang)}")
    if notes:
        params.append({"name": "message", "valueString": " ".join(notes)})
    for _, m in matches:
        coding = {
            "system": translation.target,
            "version": translation.target_version,
            "code": m.code,
            "display": m.display.get(lang),
        }
        params.append(
            {
                "name": "match",
                "part": [
                    {"name": "equivalence", "valueCode": m.equivalence.value},
                    {"name": "concept", "valueCoding": coding},
                    {"name": "source", "valueUri": translation.concept_map},
                ],
            }
        )
    return {"resourceType": "Parameters", "parameter": params}
