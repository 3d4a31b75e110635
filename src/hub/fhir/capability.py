"""The hub's FHIR CapabilityStatement: what its endpoint can do (read and search the terminology, and
``$translate``), declared once for ``/metadata`` and the vocabulary export."""

from __future__ import annotations

from typing import Any

from hub import __version__
from hub.domain.vocabulary import CANONICAL_BASE
from hub.fhir.vocabulary import FHIR_PATH, FHIR_VERSION, JURISDICTION, TRANSLATE_OPERATION

# The date the capability statement last changed (CapabilityStatement.date is required); bump it
# whenever the FHIR surface changes.
CAPABILITY_DATE = "2026-11-23"


def _param(name: str, ptype: str, definition: str, documentation: str) -> dict[str, Any]:
    return {
        "name": name,
        "definition": f"http://hl7.org/fhir/SearchParameter/{definition}",
        "type": ptype,
        "documentation": documentation,
    }


def _search_params() -> list[dict[str, Any]]:
    """The search parameters every terminology resource takes (built afresh: callers may extend the
    statement)."""
    return [
        _param("_id", "token", "Resource-id", "The id; alone it finds the latest version, like a read"),
        _param("url", "uri", "conformance-url", "The canonical url; `url|version` pins a version"),
        _param("version", "token", "conformance-version", "The business version"),
        _param("name", "string", "conformance-name", "The computer name (starts with, any case) or the id"),
        _param("status", "token", "conformance-status", "draft | active | retired | unknown"),
        {
            "name": "_count",
            "type": "number",
            "documentation": "Page size (0 to 1000); the Bundle's next link continues",
        },
        {
            "name": "_summary",
            "type": "token",
            "documentation": "true (no concepts, elements, groups), text, data, count, false",
        },
    ]


def _resource(rtype: str, profile: str) -> dict[str, Any]:
    """A terminology resource type as the statement declares it: read, vread and search by type."""
    return {
        "type": rtype,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{profile}",
        "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "search-type"}],
        "versioning": "versioned",
        "readHistory": False,
        "searchParam": _search_params(),
    }


def capability_statement(base_url: str) -> dict[str, Any]:
    """What this hub's FHIR endpoint can do: read and search the terminology, and ``$translate``."""
    concept_map_resource = _resource("ConceptMap", "ConceptMap")
    concept_map_resource["operation"] = [{"name": "translate", "definition": TRANSLATE_OPERATION}]
    endpoint = f"{base_url.rstrip('/')}{FHIR_PATH}"
    # AuditEvent (read/search-type for auditors) is intentionally not declared yet: it arrives in a
    # later issue, and a capability statement must never promise an interaction the hub cannot serve.
    return {
        "resourceType": "CapabilityStatement",
        "id": "hub",
        "url": f"{endpoint}/metadata",
        "version": __version__,
        "name": "HubTerminology",
        "title": "hub: shared vocabulary (FHIR R4)",
        "status": "active",
        "experimental": False,
        "date": CAPABILITY_DATE,
        "publisher": "hub",
        "description": (
            "Read-only terminology endpoint of the hub: the shared vocabulary as CodeSystem, ValueSet and "
            "ConceptMap, and $translate between local wheel variants and the canonical wellbeing wheel. "
            "Public, no token. Labels in Swedish (default) or English via Accept-Language. Errors are "
            "RFC 9457 application/problem+json, except an unsupported search parameter under "
            "Prefer: handling=strict, which is a 400 OperationOutcome; by default (lenient) it is ignored "
            "and left out of the Bundle's self link."
        ),
        "jurisdiction": JURISDICTION,
        "kind": "instance",
        "software": {"name": "hub", "version": __version__},
        "implementation": {"description": "hub FHIR R4 terminology endpoint", "url": endpoint},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": f"Canonical urls start with {CANONICAL_BASE}.",
                "resource": [
                    _resource("CodeSystem", "CodeSystem"),
                    _resource("ValueSet", "ValueSet"),
                    concept_map_resource,
                ],
            }
        ],
    }
