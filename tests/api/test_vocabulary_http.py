"""The vocabulary over REST and GraphQL, through the real app."""

from __future__ import annotations

import json

import httpx
import pytest

from hub.vocabulary import DATA_DIR, EXAMPLES_DIR
from tests.api.test_auth_and_problems import assert_problem

PLAN = json.loads((EXAMPLES_DIR / "child-plan-1.0.0.json").read_text())
REQUIRED = sorted(json.loads((DATA_DIR / "child-plan" / "1.0.0.json").read_text())["schema"]["required"])


async def test_index_lists_every_vocabulary_with_checksums(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/vocabulary")
    assert r.status_code == 200
    names = {v["name"] for v in r.json()["vocabularies"]}
    for expected in (
        "wellbeing-wheel",
        "variant-behovskompassen",
        "my-world-triangle",
        "resilience-matrix",
        "five-questions",
        "practice-model-steps",
        "intervention-levels",
        "organisation-types",
        "referral-kinds",
        "referral-statuses",
        "data-categories",
        "legal-bases",
        "life-stages",
        "child-plan",
    ):
        assert expected in names
    assert all(v["checksum"].startswith("sha256:") for v in r.json()["vocabularies"])


async def test_labels_follow_accept_language(client: httpx.AsyncClient) -> None:
    sv = (await client.get("/v1/vocabulary/wellbeing-wheel")).json()
    en = (await client.get("/v1/vocabulary/wellbeing-wheel", headers={"Accept-Language": "en-GB,en;q=0.9"})).json()
    safe_sv = next(i for i in sv["indicators"] if i["code"] == "safe")
    safe_en = next(i for i in en["indicators"] if i["code"] == "safe")
    assert sv["language"] == "sv" and en["language"] == "en"
    assert safe_en["label"] == "Safe"
    assert safe_sv["label"] != safe_en["label"]
    both = (await client.get("/v1/vocabulary/wellbeing-wheel?lang=all")).json()
    assert set(next(i for i in both["indicators"] if i["code"] == "safe")["label"]) == {"sv", "en"}


async def test_etag_and_304(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/vocabulary/referral-kinds/versions/1.0.0")
    assert r.status_code == 200
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "immutable" in r.headers["cache-control"]
    again = await client.get("/v1/vocabulary/referral-kinds/versions/1.0.0", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other_lang = await client.get(
        "/v1/vocabulary/referral-kinds/versions/1.0.0", headers={"If-None-Match": etag, "Accept-Language": "en"}
    )
    assert other_lang.status_code == 200 and other_lang.headers["etag"] != etag


async def test_unknown_vocabulary_and_version_are_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/vocabulary/no-such-thing"), 404, "not-found")
    body = assert_problem(await client.get("/v1/vocabulary/wellbeing-wheel/versions/9.9.9"), 404, "not-found")
    assert body["errors"][0]["pointer"] == "version"


async def test_translate_forward_and_reverse(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/vocabulary/translate", json={"system": "variant-behovskompassen", "codes": ["trygghet", "fritid"]}
    )
    assert r.status_code == 200, r.text
    results = {x["code"]: [m["code"] for m in x["matches"]] for x in r.json()["results"]}
    assert results == {"trygghet": ["safe"], "fritid": ["active"]}
    back = await client.post(
        "/v1/vocabulary/translate",
        json={"system": "variant-behovskompassen", "codes": ["included"], "reverse": True},
    )
    assert [m["code"] for m in back.json()["results"][0]["matches"]] == ["tillhorighet"]


async def test_translate_unknown_code_names_it(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/vocabulary/translate", json={"system": "variant-behovskompassen", "codes": ["nope"]})
    body = assert_problem(r, 422, "invalid-input")
    assert "nope" in body["detail"]
    assert body["errors"]


async def test_translate_validation_points_at_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/vocabulary/translate", json={"system": "variant-behovskompassen", "codes": []})
    body = assert_problem(r, 422, "invalid-input")
    assert body["errors"][0]["pointer"] == "/codes"


async def test_complete_child_plan_is_valid(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/vocabulary/child-plan/validate", json=PLAN)
    assert r.status_code == 200, r.text
    assert r.json()["valid"] is True


@pytest.mark.parametrize("section", REQUIRED)
async def test_each_missing_plan_section_is_reported_with_a_pointer(client: httpx.AsyncClient, section: str) -> None:
    plan = {k: v for k, v in PLAN.items() if k != section}
    body = assert_problem(await client.post("/v1/vocabulary/child-plan/validate", json=plan), 422, "invalid-input")
    assert f"/{section}" in [e["pointer"] for e in body["errors"]]


async def test_plan_with_several_faults_lists_every_one(client: httpx.AsyncClient, runtime) -> None:
    required = sorted(runtime.vocabulary.get("child-plan").json_schema["required"])
    plan = {k: v for k, v in PLAN.items() if k not in required[:3]}
    body = assert_problem(await client.post("/v1/vocabulary/child-plan/validate", json=plan), 422, "invalid-input")
    assert {f"/{s}" for s in required[:3]} <= {e["pointer"] for e in body["errors"]}


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/vocabulary/translate", content=b'{"system": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 400, "malformed-request")


async def test_wrong_media_type_is_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/vocabulary/translate", content=b"system=x", headers={"Content-Type": "text/plain"})
    assert_problem(r, 415, "unsupported-media-type")


async def test_oversized_body_is_413(client: httpx.AsyncClient, settings) -> None:
    big = b'{"codes": ["' + b"a" * (settings.max_body_bytes + 10) + b'"]}'
    r = await client.post("/v1/vocabulary/translate", content=big, headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "body-too-large")


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient, settings) -> None:
    async def chunks():
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"a" * 65536

    r = await client.post(
        "/v1/vocabulary/child-plan/validate", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 413, "body-too-large")


GQL = """
query($lang: Lang!) {
  wellbeingWheel(lang: $lang) {
    version indicators { code label crcArticles questions { child } goals } goals { code indicators }
  }
  translate(system: "variant-behovskompassen", codes: ["omsorg"], lang: $lang) {
    __typename
    ... on Translation { results { code matches { code equivalence } } unmatched }
  }
  codeSystem(name: "referral-kinds", lang: $lang) {
    __typename ... on CodeSystem { concepts { code display } }
  }
  missing: codeSystem(name: "nope") { __typename ... on NotFoundProblem { detail } }
}
"""


async def test_graphql_vocabulary(client: httpx.AsyncClient) -> None:
    r = await client.post("/graphql", json={"query": GQL, "variables": {"lang": "en"}})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    indicators = data["wellbeingWheel"]["indicators"]
    assert len(indicators) == 8 and {i["code"] for i in indicators} >= {"safe", "included"}
    assert all(i["crcArticles"] and i["questions"]["child"] and i["goals"] for i in indicators)
    assert data["translate"]["results"][0]["matches"][0]["code"] == "nurtured"
    assert {c["code"] for c in data["codeSystem"]["concepts"]} >= {"remiss", "orosanmalan"}
    assert data["missing"]["__typename"] == "NotFoundProblem"


async def test_graphql_me_needs_a_token(client: httpx.AsyncClient, db, auth) -> None:
    from tests.api.test_tokens_strict import register

    await register(db, "region-bup", "bup")
    q = {"query": "{ me { __typename ... on Me { organisationId roles } ... on AuthenticationProblem { detail } } }"}
    anonymous = await client.post("/graphql", json=q)  # its only field needs a token: refused as a whole
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["type"] == "/problems/unauthenticated"
    me = (await client.post("/graphql", json=q, headers=auth("region-bup", "professional"))).json()["data"]["me"]
    assert me == {"__typename": "Me", "organisationId": "region-bup", "roles": ["professional"]}
