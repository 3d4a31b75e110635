"""Validate a child's plan against the published child-plan JSON Schema (draft 2020-12)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from pydantic import BaseModel, ConfigDict

from hub.domain.vocabulary import ChildPlanSchemaDoc, InvalidRequest, Vocabulary

CHILD_PLAN = "child-plan"


class PlanViolation(BaseModel):
    """One problem in a plan: a JSON pointer to where it is, a message, and the failing schema keyword.

    For a missing required section or field the pointer names the missing property itself
    (``/risk_assessment``), not its parent.
    """

    model_config = ConfigDict(frozen=True)

    pointer: str
    message: str
    keyword: str


def _pointer(parts: Iterable[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _violations(error: ValidationError) -> list[PlanViolation]:
    if error.validator == "required" and isinstance(error.instance, Mapping):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [p for p in required if p not in error.instance]
        if missing:
            return [
                PlanViolation(
                    pointer=_pointer([*error.absolute_path, p]),
                    message=f"{p!r} is required",
                    keyword="required",
                )
                for p in missing
            ]
    return [PlanViolation(pointer=_pointer(error.absolute_path), message=error.message, keyword=str(error.validator))]


def validate_child_plan(document: dict[str, Any], schema: dict[str, Any]) -> list[PlanViolation]:
    """Every violation of ``schema`` in ``document`` (empty when valid), sorted by pointer.

    Formats (``date``) are checked. jsonschema reports one error per missing required property, so
    each missing property yields exactly one violation.
    """
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    found: dict[tuple[str, str, str], PlanViolation] = {}
    for error in validator.iter_errors(document):
        for v in _violations(error):
            found.setdefault((v.pointer, v.keyword, v.message), v)
    return sorted(found.values(), key=lambda v: (v.pointer, v.keyword, v.message))


def child_plan_schema(vocabulary: Vocabulary, version: str | None = None) -> dict[str, Any]:
    """The JSON Schema of the child's plan in ``version`` (the latest when None)."""
    doc = vocabulary.get(CHILD_PLAN, version)
    if not isinstance(doc, ChildPlanSchemaDoc):
        raise InvalidRequest(f"{CHILD_PLAN} is not a plan schema", field="version")
    return doc.json_schema


# A compiled validator per published schema (a handful: one per child-plan version), kept with the schema
# it was compiled from. jsonschema_rs answers "valid?" in microseconds where jsonschema walks the schema's
# references for milliseconds per plan; only an invalid plan is walked again, for the violations.
_COMPILED: dict[int, tuple[dict[str, Any], Any]] = {}


def _valid(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    compiled = _COMPILED.get(id(schema))
    if compiled is None or compiled[0] is not schema:
        compiled = (schema, jsonschema_rs.validator_for(schema, validate_formats=True))
        _COMPILED[id(schema)] = compiled
    return bool(compiled[1].is_valid(document))


def validate_child_plan_in(
    *, vocabulary: Vocabulary, document: dict[str, Any], version: str | None = None
) -> list[PlanViolation]:
    """Validate against the published schema; ``version`` defaults to the plan's ``schema_version``."""
    declared = document.get("schema_version")
    chosen = version or (
        declared if isinstance(declared, str) and declared in vocabulary.versions(CHILD_PLAN) else None
    )
    schema = child_plan_schema(vocabulary, chosen)
    return [] if _valid(document, schema) else validate_child_plan(document, schema)
