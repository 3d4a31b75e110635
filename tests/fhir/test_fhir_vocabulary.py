"""The vocabulary as FHIR R4: every rendered resource parses with fhir.resources, over HTTP too."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.valueset import ValueSet

from hub import fhir
from hub.domain.vocabulary import CANONICAL_BASE, CodeSystemBase, VariantDoc, Vocabulary
from hub.services.vocabulary_export import export_vocabulary
from hub.vocabulary import load_vocabulary

FIXTURES = Path(__file__).resolve().parents[1] / "vocabulary" / "fixtures" / "variants"
MODELS = {
    "CodeSystem": CodeSystem,
    "ValueSet": ValueSet,
    "ConceptMap": ConceptMap,
    "CapabilityStatement": CapabilityStatement,
    "Bundle": Bundle,
    "Parameters": Parameters,
}
FHIR_JSON = "application/fhir+json"
PROBLEM = "application/problem+json"
NAME = re.compile(r"^[A-Z]([A-Za-z0-9_]){0,254}$")
WHEEL = f"{CANONICAL_BASE}/CodeSystem/wellbeing-wheel"
BK = "variant-behovskompassen"
BK_MAP = f"{CANONICAL_BASE}/ConceptMap/{BK}"
BK_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/{BK}"
EXPANDED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def parse(resource: dict[str, Any]) -> Any:
    """Validate with the fhir.resources model of its resourceType (unknown fields are errors)."""
    return MODELS[resource["resourceType"]].model_validate(resource)


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    """The packaged vocabulary plus the test variant (one-to-many, unmatched, disjoint, unmapped)."""
    return load_vocabulary([FIXTURES])


def versions(vocab: Vocabulary) -> list[CodeSystemBase]:
    docs = [vocab.get(e.name, e.version) for e in vocab.index()]
    return [d for d in docs if isinstance(d, CodeSystemBase)]


def render_map(vocab: Vocabulary, variant: VariantDoc, lang: str) -> dict[str, Any]:
    target = vocab.get(variant.map.target, variant.map.target_version)
    assert isinstance(target, CodeSystemBase)
    return fhir.concept_map(variant, target, lang)


def match_parts(parameters: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [p["part"] for p in parameters["parameter"] if p["name"] == "match"]


def message(parameters: dict[str, Any]) -> str | None:
    return next((p["valueString"] for p in parameters["parameter"] if p["name"] == "message"), None)


def assert_metadata(resource: dict[str, Any], lang: str) -> None:
    assert resource["language"] == lang
    for key in ("id", "url", "version", "name", "title", "status", "publisher", "description"):
        assert resource[key], key
    assert resource["experimental"] is False
    assert NAME.match(resource["name"]), resource["name"]


# ------------------------------------------------------------------------------------ pure rendering
@pytest.mark.parametrize("lang", ["sv", "en"])
def test_every_code_system_and_value_set_parses(vocab: Vocabulary, lang: str) -> None:
    other = "en" if lang == "sv" else "sv"
    for doc in versions(vocab):
        cs = fhir.code_system(doc, lang)
        parse(cs)
        assert_metadata(cs, lang)
        assert (cs["id"], cs["url"], cs["content"]) == (doc.name, doc.url, "complete")
        concepts = doc.concepts()
        assert cs["count"] == len(concepts) == len(cs["concept"])
        declared = {p["code"]: p["type"] for p in cs.get("property", [])}
        for entry, rendered in zip(concepts, cs["concept"], strict=True):
            assert rendered["display"] == entry.display.get(lang)
            assert rendered["designation"][0]["language"] == other
            assert rendered["designation"][0]["value"] == entry.display.get(other)
            for prop in rendered.get("property", []):
                (key,) = [k for k in prop if k.startswith("value")]
                assert key == "value" + declared[prop["code"]].capitalize()
                if declared[prop["code"]] == "code":
                    assert prop[key] in doc.codes()

        vs = fhir.value_set(doc, lang, expanded_at=EXPANDED_AT)
        parse(vs)
        assert_metadata(vs, lang)
        assert vs["url"] == doc.value_set_url == cs["valueSet"]
        assert vs["compose"]["include"] == [{"system": doc.url, "version": doc.version}]
        assert [c["code"] for c in vs["expansion"]["contains"]] == [c.code for c in concepts]
        assert "expansion" not in fhir.value_set(doc, lang)


def test_properties_are_typed_repeated_and_localised(vocab: Vocabulary) -> None:
    wheel = fhir.code_system(vocab.get("wellbeing-wheel"), "en")  # type: ignore[arg-type]
    types = {p["code"]: p["type"] for p in wheel["property"]}
    assert types["crc-article"] == "integer" and types["goal"] == "code"
    assert types["question-child"] == "string" and types["concept-kind"] == "string"
    safe = next(c for c in wheel["concept"] if c["code"] == "safe")
    assert [p["valueInteger"] for p in safe["property"] if p["code"] == "crc-article"] == [19, 34, 36]
    questions = [p["valueString"] for p in safe["property"] if p["code"] == "question-child"]
    assert questions and questions[0].startswith("Where do you feel safe")

    legal = fhir.code_system(vocab.get("legal-bases"), "sv")  # type: ignore[arg-type]
    legal_types = {p["code"]: p["type"] for p in legal["property"]}
    assert legal_types["breaks-secrecy"] == "boolean" and legal_types["statute"] == "string"


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_every_concept_map_parses_and_explains_itself(vocab: Vocabulary, lang: str) -> None:
    variants = [d for d in versions(vocab) if isinstance(d, VariantDoc)]
    assert {v.name for v in variants} >= {BK, "variant-test-livsblomma"}
    for variant in variants:
        cm = render_map(vocab, variant, lang)
        parse(cm)
        assert_metadata(cm, lang)
        assert cm["url"] == variant.concept_map_url and cm["id"] == variant.name
        (group,) = cm["group"]
        assert (group["source"], group["sourceVersion"]) == (variant.url, variant.version)
        assert (group["target"], group["targetVersion"]) == (WHEEL, variant.map.target_version)
        assert [e["code"] for e in group["element"]] == [c.code for c in variant.concepts()]
        for element in group["element"]:
            for target in element["target"]:
                if target["equivalence"] in ("narrower", "inexact"):  # R4 invariant cmd-1
                    assert target.get("comment"), element
                assert ("code" in target) != (target["equivalence"] == "unmatched")

    test = render_map(vocab, vocab.variant("variant-test-livsblomma"), "en")
    elements = {e["code"]: e["target"] for e in test["group"][0]["element"]}
    assert [t["code"] for t in elements["vaxa"]] == ["achieving", "healthy"]
    assert elements["tro"] == [{"equivalence": "unmatched", "comment": "No counterpart in the wheel."}]
    assert elements["utanfor-kartan"][0]["equivalence"] == "unmatched"  # not in the map at all
    assert elements["lek"][1] == {
        "code": "safe",
        "display": "Safe",
        "equivalence": "disjoint",
        "comment": "Play is not safety.",
    }


def test_capability_statement_declares_the_terminology_only() -> None:
    cap = fhir.capability_statement("https://hub.example.se")
    parse(cap)
    assert cap["fhirVersion"] == "4.0.1" and cap["format"] == ["json"]
    resources = {r["type"]: r for r in cap["rest"][0]["resource"]}
    assert set(resources) == {"CodeSystem", "ValueSet", "ConceptMap"}  # AuditEvent comes later
    for r in resources.values():
        assert {"read", "search-type"} <= {i["code"] for i in r["interaction"]}
        assert {p["name"] for p in r["searchParam"]} == {
            "_id",
            "url",
            "version",
            "name",
            "status",
            "_count",
            "_summary",
        }
    assert resources["ConceptMap"]["operation"][0]["name"] == "translate"
    assert cap["implementation"]["url"] == "https://hub.example.se/fhir/r4"


def test_translate_parameters(vocab: Vocabulary) -> None:
    forward = fhir.translate_parameters(vocab.translate(system="variant-test-livsblomma", codes=["vaxa"]), "en")
    parse(forward)
    assert forward["parameter"][0] == {"name": "result", "valueBoolean": True}
    matches = match_parts(forward)
    assert [(m[0]["valueCode"], m[1]["valueCoding"]["code"]) for m in matches] == [
        ("wider", "achieving"),
        ("relatedto", "healthy"),
    ]
    assert matches[0][1]["valueCoding"]["system"] == WHEEL
    assert matches[0][2] == {
        "name": "source",
        "valueUri": f"{CANONICAL_BASE}/ConceptMap/variant-test-livsblomma",
    }
    # match has no comment in R4, so the message carries the map's reasons for inexact matches
    assert message(forward) == (
        "vaxa → achieving (wider): Achieving is wider. vaxa → healthy (relatedto): Growing includes the body."
    )

    reverse = fhir.translate_parameters(
        vocab.translate(system="variant-test-livsblomma", codes=["nurtured"], reverse=True), "sv"
    )
    parse(reverse)
    codings = {m[1]["valueCoding"]["code"]: m[0]["valueCode"] for m in match_parts(reverse)}
    assert codings == {"hemma": "wider", "familj": "specializes"}  # inverted equivalences

    unmatched = fhir.translate_parameters(vocab.translate(system="variant-test-livsblomma", codes=["tro"]), "en")
    parse(unmatched)
    assert unmatched["parameter"][0]["valueBoolean"] is False
    assert "tro" in (message(unmatched) or "")
    assert match_parts(unmatched) == []


def test_searchset_bundle_parses(vocab: Vocabulary) -> None:
    resources = [fhir.code_system(d, "sv") for d in versions(vocab)]
    bundle = fhir.searchset_bundle(resources, "https://hub.example.se/", self_url="https://hub.example.se/x")
    parse(bundle)
    assert bundle["total"] == len(resources)
    assert bundle["entry"][0]["fullUrl"].startswith("https://hub.example.se/fhir/r4/CodeSystem/")


def test_export_writes_every_file_and_every_fhir_file_parses(vocab: Vocabulary, tmp_path: Path) -> None:
    written = export_vocabulary(vocab, tmp_path, base_url="https://hub.example.se")
    assert len(written) == len(set(written))
    assert all((tmp_path / p).is_file() for p in written)
    for e in vocab.index():
        assert f"json/{e.name}/{e.version}.json" in written
    assert "json-schema/child-plan-1.0.0.schema.json" in written
    assert json.loads((tmp_path / "json-schema/child-plan-1.0.0.schema.json").read_text())["properties"]
    for name in ("wellbeing-wheel", BK, "referral-kinds"):
        assert f"fhir/CodeSystem-{name}.json" in written and f"fhir/ValueSet-{name}.json" in written
    assert f"fhir/ConceptMap-{BK}.json" in written
    fhir_files = [p for p in written if p.startswith("fhir/")]
    for path in fhir_files:
        resource = json.loads((tmp_path / path).read_text(encoding="utf-8"))
        parse(resource)
        assert path == f"fhir/{resource['resourceType']}-{resource['id']}.json"
    index = json.loads((tmp_path / "index.json").read_text())["vocabularies"]
    assert {(v["name"], v["version"], v["checksum"]) for v in index} == {
        (e.name, e.version, e.checksum) for e in vocab.index()
    }
    before = {p: (tmp_path / p).read_bytes() for p in written}
    assert export_vocabulary(vocab, tmp_path, base_url="https://hub.example.se") == written
    assert before == {p: (tmp_path / p).read_bytes() for p in written}  # reproducible


# ------------------------------------------------------------------------------------------ over HTTP
def fhir_body(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    parse(body)
    return body


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("/problems/")
    return body


async def test_metadata(client: httpx.AsyncClient) -> None:
    cap = fhir_body(await client.get("/fhir/r4/metadata"))
    assert cap["fhirVersion"] == "4.0.1"
    assert cap["implementation"]["url"] == "http://hub.test/fhir/r4"


async def test_search_returns_every_version_or_exactly_the_match(client: httpx.AsyncClient, runtime: Any) -> None:
    vocab: Vocabulary = runtime.vocabulary
    every = fhir_body(await client.get("/fhir/r4/CodeSystem"))
    assert every["type"] == "searchset"
    assert every["total"] == len(versions(vocab)) == len(every["entry"])

    one = fhir_body(await client.get("/fhir/r4/CodeSystem", params={"url": WHEEL}))
    assert [e["resource"]["id"] for e in one["entry"]] == ["wellbeing-wheel"]
    assert one["entry"][0]["fullUrl"] == "http://hub.test/fhir/r4/CodeSystem/wellbeing-wheel"
    pinned = fhir_body(await client.get("/fhir/r4/CodeSystem", params={"url": f"{WHEEL}|1.0.0"}))
    assert pinned["total"] == 1
    none = fhir_body(await client.get("/fhir/r4/CodeSystem", params={"url": WHEEL, "version": "9.9.9"}))
    assert none["total"] == 0 and not none.get("entry")
    by_name = fhir_body(await client.get("/fhir/r4/CodeSystem", params={"name": "wellbeingwheel"}))
    assert [e["resource"]["id"] for e in by_name["entry"]] == ["wellbeing-wheel"]

    value_sets = fhir_body(await client.get("/fhir/r4/ValueSet", params={"url": f"{CANONICAL_BASE}/ValueSet/{BK}"}))
    assert [e["resource"]["id"] for e in value_sets["entry"]] == [BK]
    maps = fhir_body(await client.get("/fhir/r4/ConceptMap"))
    assert {e["resource"]["id"] for e in maps["entry"]} == {v.name for v in vocab.variants()}
    only = fhir_body(await client.get("/fhir/r4/ConceptMap", params={"url": BK_MAP}))
    assert [e["resource"]["url"] for e in only["entry"]] == [BK_MAP]


async def test_read_in_either_language_with_etag(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/r4/CodeSystem/wellbeing-wheel")
    sv = fhir_body(response)
    assert sv["language"] == "sv" and sv["title"] == "Välbefinnandehjulet"
    etag = response.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert response.headers["cache-control"] == "public, max-age=300"

    en_response = await client.get("/fhir/r4/CodeSystem/wellbeing-wheel", headers={"Accept-Language": "en"})
    assert fhir_body(en_response)["language"] == "en"
    assert en_response.headers["etag"] != etag

    again = await client.get("/fhir/r4/CodeSystem/wellbeing-wheel", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag

    value_set = fhir_body(await client.get(f"/fhir/r4/ValueSet/{BK}"))
    assert len(value_set["expansion"]["contains"]) == 8
    cm = fhir_body(await client.get(f"/fhir/r4/ConceptMap/{BK}", headers={"Accept-Language": "en"}))
    assert cm["group"][0]["element"][0]["target"][0]["code"] == "safe"
    versioned = await client.get("/fhir/r4/CodeSystem/wellbeing-wheel/_history/1.0.0")
    assert fhir_body(versioned)["version"] == "1.0.0"
    assert "immutable" in versioned.headers["cache-control"]


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/r4/CodeSystem/no-such-thing",
        "/fhir/r4/ConceptMap/wellbeing-wheel",  # a code system, but no crosswalk
        "/fhir/r4/CodeSystem/child-plan",  # a vocabulary, but not a code system
        "/fhir/r4/CodeSystem/wellbeing-wheel/_history/9.9.9",
    ],
)
async def test_unknown_resource_is_a_404_problem(client: httpx.AsyncClient, path: str) -> None:
    problem(await client.get(path), 404)


async def test_translate_forward_and_reverse(client: httpx.AsyncClient) -> None:
    forward = fhir_body(
        await client.get(
            "/fhir/r4/ConceptMap/$translate", params={"url": BK_MAP, "system": BK_SYSTEM, "code": "trygghet"}
        )
    )
    assert forward["parameter"][0]["valueBoolean"] is True
    assert message(forward) is None  # equivalent: nothing to explain
    (match,) = match_parts(forward)
    assert match[0] == {"name": "equivalence", "valueCode": "equivalent"}
    assert match[1]["valueCoding"] == {
        "system": WHEEL,
        "version": "1.0.0",
        "code": "safe",
        "display": "Trygg",
    }
    assert match[2] == {"name": "source", "valueUri": BK_MAP}

    reverse = fhir_body(
        await client.get(
            f"/fhir/r4/ConceptMap/{BK}/$translate",
            params={"system": WHEEL, "code": "safe", "reverse": "true"},
            headers={"Accept-Language": "en"},
        )
    )
    coding = match_parts(reverse)[0][1]["valueCoding"]
    assert (coding["system"], coding["code"], coding["display"]) == (BK_SYSTEM, "trygghet", "Safety")

    posted = fhir_body(
        await client.post(
            "/fhir/r4/ConceptMap/$translate",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "url", "valueUri": BK_MAP},
                    {"name": "coding", "valueCoding": {"system": BK_SYSTEM, "code": "fritid"}},
                ],
            },
            headers={"Content-Type": FHIR_JSON},
        )
    )
    assert match_parts(posted)[0][0]["valueCode"] == "narrower"
    assert "fritid → active (narrower)" in (message(posted) or "")


async def test_translate_unmatched_and_wrong_requests(client: httpx.AsyncClient) -> None:
    unmatched = fhir_body(
        await client.get(
            "/fhir/r4/ConceptMap/$translate",
            params={"url": BK_MAP, "system": WHEEL, "code": "successful-learners", "reverse": "true"},
        )
    )
    assert unmatched["parameter"][0] == {"name": "result", "valueBoolean": False}
    assert "successful-learners" in (message(unmatched) or "")

    unknown = problem(await client.get("/fhir/r4/ConceptMap/$translate", params={"url": BK_MAP, "code": "nope"}), 422)
    assert unknown["errors"][0]["pointer"] == "code"
    missing = problem(await client.get("/fhir/r4/ConceptMap/$translate", params={"url": BK_MAP}), 422)
    assert missing["errors"][0]["pointer"] == "code"
    wrong_system = problem(
        await client.get("/fhir/r4/ConceptMap/$translate", params={"url": BK_MAP, "system": WHEEL, "code": "safe"}),
        422,
    )
    assert wrong_system["errors"][0]["pointer"] == "system"
    problem(await client.get("/fhir/r4/ConceptMap/no-such-map/$translate", params={"code": "safe"}), 404)
    problem(await client.post("/fhir/r4/ConceptMap/$translate", json={"resourceType": "Patient"}), 422)


async def test_legal_bases_publishes_both_versions_and_v2_dates_the_statutes(client: httpx.AsyncClient) -> None:
    """Issue #14: legal-bases 1.0.0 stays published unchanged, 2.0.0 is the default and its ``statute``
    property lists each reference with its period, on the CodeSystem and the ValueSet alike."""
    latest = fhir_body(await client.get("/fhir/r4/CodeSystem/legal-bases", headers={"Accept-Language": "sv"}))
    old = fhir_body(await client.get("/fhir/r4/CodeSystem/legal-bases/_history/1.0.0"))
    assert (latest["version"], old["version"]) == ("2.0.0", "1.0.0")

    def statutes(cs: dict[str, Any]) -> list[str]:
        (concept,) = [c for c in cs["concept"] if c["code"] == "report-of-concern"]
        return [p["valueString"] for p in concept["property"] if p["code"] == "statute"]

    assert statutes(latest) == [
        "14 kap. 1 § socialtjänstlagen (2001:453), jfr 10 kap. 28 § offentlighets- och sekretesslagen (2009:400)"
        " (gäller 2002-01-01–2025-07-01)",
        "anmälningsskyldigheten i socialtjänstlagen (2025:400), jfr 10 kap. 28 § offentlighets- och "
        "sekretesslagen (2009:400) (gäller 2025-07-01–)",
    ]
    assert len(statutes(old)) == 1 and "14 kap. 1 §" in statutes(old)[0]
    search = fhir_body(await client.get("/fhir/r4/ValueSet?url=https://vocab.hub.se/fhir/ValueSet/legal-bases"))
    assert sorted(e["resource"]["version"] for e in search["entry"]) == ["1.0.0", "2.0.0"]
