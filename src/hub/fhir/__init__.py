"""FHIR R4 renderings of hub's domain models: pure functions returning JSON-ready dicts."""

from hub.fhir.capability import capability_statement
from hub.fhir.vocabulary import (
    FHIR_VERSION,
    code_system,
    concept_map,
    concept_map_id,
    searchset_bundle,
    translate_parameters,
    value_set,
)

__all__ = [
    "FHIR_VERSION",
    "capability_statement",
    "code_system",
    "concept_map",
    "concept_map_id",
    "searchset_bundle",
    "translate_parameters",
    "value_set",
]
