"""The child's plan schema: the complete example passes, every missing required section is named."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from hub.domain.vocabulary import ChildPlanSchemaDoc
from hub.services.child_plan import child_plan_schema, validate_child_plan, validate_child_plan_in
from hub.vocabulary import EXAMPLES_DIR, load_vocabulary

VOCAB = load_vocabulary()
DOC = VOCAB.get("child-plan", "1.0.0")
assert isinstance(DOC, ChildPlanSchemaDoc)
SCHEMA = DOC.json_schema
REQUIRED = [s.code for s in DOC.sections if s.required]
EXAMPLE: dict[str, Any] = json.loads((EXAMPLES_DIR / "child-plan-1.0.0.json").read_text(encoding="utf-8"))

SIP = {
    "principals": [
        {
            "name": "Kumla kommun",
            "kind": "municipality",
            "organisation_types": ["socialtjanst-oppenvard", "elevhalsa"],
        },
        {"name": "Region Örebro län", "kind": "region", "organisation_types": ["forsta-linjen"]},
    ],
    "overall_responsibility": {"principal": "Kumla kommun", "contact": {"organisation_type": "elevhalsa"}},
    "actions": [
        {
            "who": {"organisation_type": "forsta-linjen"},
            "principal": "Region Örebro län",
            "what": "Samtalsstöd",
            "when": "Från 2025-02-17, varannan vecka",
            "intervention": "i2",
        },
        {
            "who": {"organisation_type": "socialtjanst-oppenvard"},
            "principal": "Kumla kommun",
            "what": "Familjestöd",
            "when": "Från 2025-02-12, varje vecka",
            "intervention": "i3",
        },
    ],
    "actions_by_others": [],
    "meeting_date": "2025-02-05",
}


def plan() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE)


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_domain_section_is_in_the_schema() -> None:
    assert set(REQUIRED) == {
        "reasons",
        "participants",
        "child_views",
        "guardian_views",
        "needs",
        "actions_needed",
        "interventions",
        "resources",
        "timeline",
        "expected_outcome",
        "risk_assessment",
        "evaluation",
        "lead_professional",
    }
    assert {"sip", "named_person"} <= set(SCHEMA["properties"])


def test_complete_example_is_accepted() -> None:
    assert validate_child_plan(plan(), SCHEMA) == []
    assert validate_child_plan_in(vocabulary=VOCAB, document=plan()) == []


@pytest.mark.parametrize("section", [*REQUIRED, "schema_version"])
def test_each_missing_required_section_is_named(section: str) -> None:
    document = plan()
    del document[section]
    violations = validate_child_plan(document, SCHEMA)
    assert [(v.pointer, v.keyword) for v in violations] == [(f"/{section}", "required")]


def test_every_error_is_collected_with_its_pointer() -> None:
    document = plan()
    del document["risk_assessment"]
    del document["evaluation"]
    document["needs"][0]["indicator"] = "happy"
    document["created_on"] = "2025-13-01"
    document["unknown_section"] = {}
    pointers = {v.pointer for v in validate_child_plan(document, SCHEMA)}
    assert {"/risk_assessment", "/evaluation", "/needs/0/indicator", "/created_on", ""} <= pointers


def test_nested_required_points_at_the_missing_field() -> None:
    document = plan()
    del document["risk_assessment"]["harmful_behaviour"]["triggers"]  # needed: behaviour by the child is present
    del document["evaluation"]["evaluations"][0]["what_should_change"]  # needed: purpose only partly met
    pointers = [v.pointer for v in validate_child_plan(document, SCHEMA)]
    assert pointers == [
        "/evaluation/evaluations/0/what_should_change",
        "/risk_assessment/harmful_behaviour/triggers",
    ]


def test_lead_professional_may_be_not_appointed() -> None:
    document = plan()
    document["lead_professional"] = {"appointed": False}
    assert validate_child_plan(document, SCHEMA) == []
    document["lead_professional"] = {"appointed": True}
    assert {v.pointer for v in validate_child_plan(document, SCHEMA)} == {
        "/lead_professional/who",
        "/lead_professional/tasks",
    }


def test_sip_plan_is_accepted() -> None:
    document = plan()
    document["sip"] = copy.deepcopy(SIP)
    assert validate_child_plan(document, SCHEMA) == []


@pytest.mark.parametrize("element", ["principals", "overall_responsibility", "actions"])
def test_sip_requires_its_elements(element: str) -> None:
    document = plan()
    document["sip"] = copy.deepcopy(SIP)
    del document["sip"][element]
    assert [v.pointer for v in validate_child_plan(document, SCHEMA)] == [f"/sip/{element}"]


def test_sip_needs_two_principals() -> None:
    document = plan()
    document["sip"] = copy.deepcopy(SIP)
    document["sip"]["principals"].pop()
    assert [(v.pointer, v.keyword) for v in validate_child_plan(document, SCHEMA)] == [("/sip/principals", "minItems")]


def test_pointer_escaping() -> None:
    document = plan()
    document["extensions"] = {"a/b~c": 1}
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["extensions"] = {"type": "object", "additionalProperties": {"type": "string"}}
    assert [v.pointer for v in validate_child_plan(document, schema)] == ["/extensions/a~1b~0c"]


def test_schema_lookup_by_version() -> None:
    assert child_plan_schema(VOCAB, "1.0.0") is SCHEMA


def _broken(change: Any) -> dict[str, Any]:
    document = plan()
    change(document)
    return document


@pytest.mark.parametrize(
    "document",
    [
        _broken(lambda d: d.pop("risk_assessment")),
        _broken(lambda d: d.update(created_on="2025-13-01")),  # a format
        _broken(lambda d: d.update(unknown_section={})),  # additionalProperties
        _broken(lambda d: d["needs"][0].update(indicator="happy")),  # an enum
        _broken(
            lambda d: (
                d["risk_assessment"].update(risks_identified=True, risks=None) or d["risk_assessment"].pop("risks")
            )
        ),
        _broken(lambda d: d.update(schema_version="9.9.9")),
        plan(),
    ],
    ids=["missing", "format", "extra", "enum", "if-then", "version", "valid"],
)
def test_the_compiled_check_agrees_with_the_detailed_one(document: dict[str, Any]) -> None:
    """validate_child_plan_in answers "valid?" with a compiled validator and walks only invalid plans for
    their violations: both must agree on every kind of violation the schema has."""
    assert validate_child_plan_in(vocabulary=VOCAB, document=document, version="1.0.0") == validate_child_plan(
        document, SCHEMA
    )
