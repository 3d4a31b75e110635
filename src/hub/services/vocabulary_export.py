"""Export the whole vocabulary as files: JSON per version, the plan's JSON Schema and FHIR R4 resources.

Layout (paths relative to the target directory)::

    index.json                               name, version, kind, checksum, latest of every version
    json/<name>/<version>.json               each published version, bilingual ({sv, en} texts)
    json-schema/<name>-<version>.schema.json the child's plan schema, every version
    fhir/CodeSystem-<id>.json                latest version of each code system
    fhir/ValueSet-<id>.json                  latest version of each value set (compose, no expansion)
    fhir/ConceptMap-<id>.json                latest version of each variant's crosswalk
    fhir/CapabilityStatement-hub.json        what the hub's FHIR endpoint at ``base_url`` offers

FHIR files are in Swedish (the default language) with English designations on every concept; they
carry no timestamps, so exporting the same vocabulary twice writes the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub import fhir
from hub.domain.vocabulary import ChildPlanSchemaDoc, CodeSystemBase, VariantDoc, Vocabulary

EXPORT_LANGUAGE = "sv"


def _write(directory: Path, relative: str, content: Any, written: list[str]) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written.append(relative)


def export_vocabulary(vocab: Vocabulary, directory: Path, *, base_url: str) -> list[str]:
    """Write every file of the layout above into ``directory``; returns the relative paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    index = vocab.index()
    for entry in index:
        _write(
            directory,
            f"json/{entry.name}/{entry.version}.json",
            vocab.document_json(entry.name, entry.version),
            written,
        )
        doc = vocab.get(entry.name, entry.version)
        if isinstance(doc, ChildPlanSchemaDoc):
            _write(directory, f"json-schema/{entry.name}-{entry.version}.schema.json", doc.json_schema, written)
    for name in vocab.names():
        doc = vocab.get(name)
        if not isinstance(doc, CodeSystemBase):
            continue
        _write(directory, f"fhir/CodeSystem-{name}.json", fhir.code_system(doc, EXPORT_LANGUAGE), written)
        _write(directory, f"fhir/ValueSet-{name}.json", fhir.value_set(doc, EXPORT_LANGUAGE), written)
        if isinstance(doc, VariantDoc):
            target = vocab.get(doc.map.target, doc.map.target_version)
            assert isinstance(target, CodeSystemBase)
            _write(
                directory,
                f"fhir/ConceptMap-{fhir.concept_map_id(doc)}.json",
                fhir.concept_map(doc, target, EXPORT_LANGUAGE),
                written,
            )
    _write(directory, "fhir/CapabilityStatement-hub.json", fhir.capability_statement(base_url), written)
    _write(
        directory,
        "index.json",
        {
            "vocabularies": [
                {
                    "name": e.name,
                    "version": e.version,
                    "kind": e.kind,
                    "checksum": e.checksum,
                    "latest": e.latest,
                }
                for e in index
            ]
        },
        written,
    )
    return written
