"""The vocabulary documents behind the FHIR terminology resources: which ones are published as which
resource type, the one behind an id, its rendering and the checksum its ETag rests on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hub import fhir
from hub.domain.errors import FieldError, NotFound
from hub.domain.vocabulary import CodeSystemBase, VariantDoc, Vocabulary

RESOURCE_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
# ValueSet expansions need a timestamp; this process expands once, when it starts (part of the ETag).
EXPANDED_AT = datetime.now(UTC).replace(microsecond=0)


def published(vocab: Vocabulary, rtype: str) -> list[tuple[str, str]]:
    """Every published (name, version) that renders as ``rtype``, in index order."""
    wanted = VariantDoc if rtype == "ConceptMap" else CodeSystemBase
    return [(e.name, e.version) for e in vocab.index() if isinstance(vocab.get(e.name, e.version), wanted)]


def document(vocab: Vocabulary, rtype: str, rid: str, version: str | None) -> CodeSystemBase:
    """The document behind ``rtype/rid`` (latest version when None); NotFound if it is no such resource."""
    doc = vocab.get(rid, version)
    wanted = VariantDoc if rtype == "ConceptMap" else CodeSystemBase
    if not isinstance(doc, wanted):
        raise NotFound(f"there is no {rtype} with id {rid!r}", errors=[FieldError("id", "unknown id")])
    return doc


def render(vocab: Vocabulary, rtype: str, doc: CodeSystemBase, lang: str, *, expand: bool) -> dict[str, Any]:
    """``doc`` as the FHIR resource ``rtype`` in ``lang`` (a ValueSet expanded when ``expand``)."""
    if rtype == "CodeSystem":
        return fhir.code_system(doc, lang)
    if rtype == "ValueSet":
        return fhir.value_set(doc, lang, expanded_at=EXPANDED_AT if expand else None)
    assert isinstance(doc, VariantDoc)
    target = vocab.get(doc.map.target, doc.map.target_version)
    assert isinstance(target, CodeSystemBase)
    return fhir.concept_map(doc, target, lang)


def checksum(vocab: Vocabulary, rtype: str, doc: CodeSystemBase) -> str:
    """What the resource's rendering rests on: its document's checksum, a ConceptMap's target's, and
    a ValueSet's expansion time."""
    checksum = vocab.checksum(doc.name, doc.version)
    if isinstance(doc, VariantDoc) and rtype == "ConceptMap":
        checksum += vocab.checksum(doc.map.target, doc.map.target_version)
    if rtype == "ValueSet":
        checksum += EXPANDED_AT.isoformat()
    return checksum
