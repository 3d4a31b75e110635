"""FHIR search parameters over HTTP: `_id`, `url`, `version`, `name`, `status`, `_count`, `_summary` on the
terminology, `_id` on AuditEvent, and `Prefer: handling` for parameters the hub does not support. Every
answer is validated with fhir.resources R4B."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.valueset import ValueSet
from tests.api.test_auth_and_problems import assert_problem
from tests.fhir.test_fhir_audit import REGIONAL, SENDER
from tests.fhir.test_fhir_audit import audited as audited  # the fixture

from hub.fhir import search as fhir_search

FHIR_JSON = "application/fhir+json"
MODELS = {"CodeSystem": CodeSystem, "ValueSet": ValueSet, "ConceptMap": ConceptMap}
ONE = {"CodeSystem": "wellbeing-wheel", "ValueSet": "wellbeing-wheel", "ConceptMap": "variant-behovskompassen"}
STRICT = {"Prefer": "handling=strict"}


def bundle_of(r: httpx.Response) -> dict[str, Any]:
    """The searchset Bundle, validated, each resource too."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = r.json()
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    for entry in body.get("entry", []):
        resource = entry["resource"]
        {**MODELS, "AuditEvent": AuditEvent}[resource["resourceType"]].model_validate(resource)
    return body


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((li["url"] for li in bundle.get("link", []) if li["relation"] == relation), None)


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


async def search(client: httpx.AsyncClient, rtype: str, params: Any = None, **headers: str) -> dict[str, Any]:
    return bundle_of(await client.get(f"/fhir/r4/{rtype}", params=params, headers=headers))


@pytest.mark.parametrize("rtype", list(ONE))
async def test_id_finds_exactly_that_resource(client, rtype) -> None:
    one = await search(client, rtype, {"_id": ONE[rtype]})
    assert ids(one) == [ONE[rtype]] and one["total"] == 1
    assert (await search(client, rtype, {"_id": "no-such-thing"}))["total"] == 0


async def test_id_takes_alternatives_and_repeats_must_all_match(client) -> None:
    every = ids(await search(client, "CodeSystem"))
    assert len(every) > 2
    first, other = "wellbeing-wheel", next(i for i in every if i != "wellbeing-wheel")
    both = await search(client, "CodeSystem", {"_id": f"{first},{other}"})
    assert sorted(ids(both)) == sorted([first, other])
    anded = await search(client, "CodeSystem", [("_id", first), ("_id", other)])
    assert anded["total"] == 0, "a repeated parameter must match each time"
    assert (await search(client, "ConceptMap", {"_id": first}))["total"] == 0, "a code system, no crosswalk"


async def test_status_url_version_and_name_narrow_the_search(client) -> None:
    every = await search(client, "CodeSystem")
    statuses = {e["resource"]["status"] for e in every["entry"]}
    for status in statuses:
        same = await search(client, "CodeSystem", {"status": status})
        assert same["total"] == sum(e["resource"]["status"] == status for e in every["entry"])
        coded = await search(client, "CodeSystem", {"status": f"{fhir_search.PUBLICATION_STATUS}|{status}"})
        assert coded["total"] == same["total"]
    assert (await search(client, "CodeSystem", {"status": "retired"}))["total"] == 0
    wheel = next(e["resource"] for e in every["entry"] if e["resource"]["id"] == "wellbeing-wheel")
    pinned = await search(client, "CodeSystem", {"url": f"{wheel['url']}|{wheel['version']}", "_id": "wellbeing-wheel"})
    assert ids(pinned) == ["wellbeing-wheel"]
    assert (await search(client, "CodeSystem", {"_id": "wellbeing-wheel", "version": "9.9.9"}))["total"] == 0
    assert ids(await search(client, "CodeSystem", {"_id": "wellbeing-wheel", "name": "Wellbeing"})) == [
        "wellbeing-wheel"
    ]


@pytest.mark.parametrize(
    ("rtype", "detail"), [("CodeSystem", "concept"), ("ValueSet", "compose"), ("ConceptMap", "group")]
)
async def test_summary_true_returns_the_summary_elements_only(client, rtype, detail) -> None:
    full = await search(client, rtype, {"_id": ONE[rtype]})
    assert detail in full["entry"][0]["resource"]
    summary = await search(client, rtype, {"_id": ONE[rtype], "_summary": "true"})
    resource = summary["entry"][0]["resource"]
    assert detail not in resource and "description" not in resource
    assert set(resource) <= fhir_search.SUMMARY_ELEMENTS[rtype]
    assert {"id", "url", "version", "name", "status"} <= set(resource)
    assert fhir_search.SUBSETTED in resource["meta"]["tag"]
    assert resource["meta"]["versionId"] == full["entry"][0]["resource"]["meta"]["versionId"]
    if rtype == "CodeSystem":
        assert resource["count"] == len(full["entry"][0]["resource"]["concept"])
    text = (await search(client, rtype, {"_id": ONE[rtype], "_summary": "text"}))["entry"][0]["resource"]
    assert "url" not in text and text["status"] and fhir_search.SUBSETTED in text["meta"]["tag"]
    data = (await search(client, rtype, {"_id": ONE[rtype], "_summary": "data"}))["entry"][0]["resource"]
    assert data == full["entry"][0]["resource"]


@pytest.mark.parametrize("params", [{"_summary": "count"}, {"_count": "0"}])
async def test_summary_count_returns_the_total_only(client, params) -> None:
    every = await search(client, "ValueSet")
    counted = await search(client, "ValueSet", params)
    assert counted["total"] == every["total"] and "entry" not in counted


async def test_count_pages_with_next_links_to_the_end(client) -> None:
    every = ids(await search(client, "CodeSystem"))
    url: str | None = "/fhir/r4/CodeSystem?_count=4&status=active"
    seen: list[str] = []
    while url is not None:
        page = bundle_of(await client.get(url))
        assert len(page["entry"]) <= 4 and page["total"] == len(every)
        seen += ids(page)
        url = link(page, "next")
        if url is not None:
            assert ("_count", "4") in query(url) and ("status", "active") in query(url)
            assert urlsplit(url).netloc == "hub.test"
    assert seen == every


async def test_an_unsupported_parameter_is_ignored_and_left_out_of_the_self_link(client) -> None:
    for headers in ({}, {"Prefer": "handling=lenient"}, {"Prefer": "return=minimal"}):
        r = await client.get("/fhir/r4/CodeSystem?_id=wellbeing-wheel&_sort=title&foo=bar", headers=headers)
        bundle = bundle_of(r)
        assert ids(bundle) == ["wellbeing-wheel"]
        assert "Prefer" in r.headers["vary"], "a shared cache must not answer a strict request with this"
        assert query(link(bundle, "self") or "") == [("_id", "wellbeing-wheel")]


@pytest.mark.parametrize("prefer", ["handling=strict", "return=representation, handling=strict"])
async def test_strict_handling_is_a_400_operation_outcome_naming_the_parameter(client, prefer) -> None:
    r = await client.get("/fhir/r4/ConceptMap?_id=x&_sort=title&foo=bar", headers={"Prefer": prefer})
    assert r.status_code == 400 and r.headers["content-type"].startswith(FHIR_JSON)
    outcome = OperationOutcome.model_validate(r.json())
    assert [i.diagnostics for i in outcome.issue] == ["_sort", "foo"]
    assert {i.code for i in outcome.issue} == {"not-supported"} and {i.severity for i in outcome.issue} == {"error"}
    ok = await client.get("/fhir/r4/ConceptMap?_id=x&_count=1", headers={"Prefer": prefer})
    assert ok.status_code == 200, "supported parameters pass under strict handling"


@pytest.mark.parametrize(("params", "field"), [({"_summary": "maybe"}, "_summary"), ({"_count": "-1"}, "_count")])
async def test_a_bad_value_of_a_supported_parameter_is_a_422(client, params, field) -> None:
    body = assert_problem(await client.get("/fhir/r4/CodeSystem", params=params), 422, "invalid-input")
    assert field in {e["pointer"] for e in body["errors"]}


async def test_the_capability_statement_declares_the_parameters(client) -> None:
    r = await client.get("/fhir/r4/metadata")
    CapabilityStatement.model_validate(r.json())
    resources = {res["type"]: res for res in r.json()["rest"][0]["resource"]}
    wanted = {"_id", "url", "version", "name", "status", "_count", "_summary"}
    for rtype in ONE:
        assert {p["name"] for p in resources[rtype]["searchParam"]} == wanted
    assert {"_id", "_count"} <= {p["name"] for p in resources["AuditEvent"]["searchParam"]}


def test_summary_elements_are_those_r4_marks_as_summary() -> None:
    for rtype, model in MODELS.items():
        marked = {
            field.alias or name
            for name, field in model.model_fields.items()
            if (field.json_schema_extra or {}).get("summary_element_property")  # type: ignore[union-attr]
        }
        assert fhir_search.SUMMARY_ELEMENTS[rtype] - {"resourceType"} == marked


# --- AuditEvent -------------------------------------------------------------------------------------------


async def test_audit_event_id_finds_one_entry_the_caller_may_see(client, auth, audited) -> None:
    regional = auth(REGIONAL, "auditor")
    every = ids(await search(client, "AuditEvent", **regional))
    one = await search(client, "AuditEvent", {"_id": every[-1]}, **regional)
    assert ids(one) == [every[-1]] and link(one, "next") is None
    refused = await search(client, "AuditEvent", {"outcome": "4"}, **regional)
    hidden = ids(refused)[0]  # Kumla's refusal: Nora's auditor may not see it
    assert ids(await search(client, "AuditEvent", {"_id": hidden}, **auth(SENDER, "auditor"))) == []
    assert ids(await search(client, "AuditEvent", {"_id": "not-an-id"}, **regional)) == []


async def test_audit_event_is_strict_unless_the_caller_asks_for_lenient(client, auth, audited) -> None:
    regional = auth(REGIONAL, "auditor")
    r = await client.get("/fhir/r4/AuditEvent", params={"patient": "Patient/x", "type": "x"}, headers=regional)
    assert r.status_code == 400 and r.headers["content-type"].startswith(FHIR_JSON)
    assert [i.diagnostics for i in OperationOutcome.model_validate(r.json()).issue] == ["patient"]
    lenient = await search(
        client, "AuditEvent", {"entity-identifier": "x", "outcome": "4"}, **regional, Prefer="handling=lenient"
    )
    assert lenient["entry"] and query(link(lenient, "self") or "") == [("outcome", "4")]


# --- the parsing alone ------------------------------------------------------------------------------------


def test_parsing_keeps_what_it_uses_and_names_what_it_ignores() -> None:
    items = [("_id", "a,b"), ("foo", "1"), ("version", ""), ("_count", "2"), ("_summary", "true")]
    parsed = fhir_search.parse_search(items, strict=False)
    assert parsed.criteria == (("_id", ("a", "b")),) and parsed.ignored == ("foo",)
    assert parsed.used == (("_id", "a,b"), ("_count", "2"), ("_summary", "true")), "an empty value is ignored"
    assert (parsed.count, parsed.offset, parsed.summary) == (2, 0, "true")
    with pytest.raises(fhir_search.UnsupportedParameters) as raised:
        fhir_search.parse_search(items, strict=True)
    assert raised.value.names == ("foo",)
    assert fhir_search.names_ids(parsed) and not fhir_search.pins_version(parsed)
    pinned = fhir_search.parse_search([("_id", "a"), ("url", "https://x|1.0.0")], strict=True)
    assert fhir_search.pins_version(pinned), "url|version names a version: _id then finds that one"


@pytest.mark.parametrize(
    ("prefer", "default", "strict"),
    [
        (None, False, False),
        (None, True, True),
        ("handling=strict", False, True),
        ("return=minimal; handling=lenient", True, False),
        ('HANDLING="strict"', False, True),
        ("handling=bogus", True, True),
    ],
)
def test_prefer_handling(prefer: str | None, default: bool, strict: bool) -> None:
    assert fhir_search.strict_handling(prefer, default=default) is strict
