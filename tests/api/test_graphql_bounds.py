"""GraphQL attacked as a client inside the county would: without a token, with one organisation's token and
with a coordinator's. Every request goes through real HTTP to the real app on real PostgreSQL.

What must hold: a request is bounded (depth, aliases, fields, cost, and a budget per organisation and
minute) and refused as a whole before anything runs; text PostgreSQL cannot hold never reaches it; no error
carries SQL, parameters, tracebacks or class names; a request refused as a whole answers with the problem's
HTTP status; and outside dev mode there is no introspection, no "did you mean", no explorer and no /docs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from graphql import get_introspection_query
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jose import jwt
from schemathesis.python import asgi as schemathesis_asgi
from sqlalchemy import text

from hub.api.auth import mint_dev_token
from hub.config import Settings
from hub.devtools.demo import load_demo
from hub.main import create_app
from hub.runtime import Runtime

Auth = Callable[..., dict[str, str]]
SCHOOL, COORDINATOR = "nora-grundskola", "region-samordning"
LEAKS = ("select", "insert", "where", "sqlalchemy", "asyncpg", "psycopg", "traceback", "error:", "exception", "[sql")
FLOW = 'flowCounts(by: ["kind"]) { __typename }'


@pytest.fixture
async def registry(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """The demo county's organisations: tokens are honoured only for registered ones."""
    async with runtime.sessions() as session:
        await load_demo(session)


async def gql(client: httpx.AsyncClient, query: str, headers: dict[str, str] | None = None, **variables: Any):
    body = {"query": query, "variables": variables or None}
    return await client.post("/graphql", json=body, headers=headers or {})


def problem(r: httpx.Response, status: int, type_code: str) -> dict[str, Any]:
    """A request refused as a whole: the HTTP status, and a body that is a problem and a GraphQL response
    without data whose errors carry the problem in their extensions."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"/problems/{type_code}" and body["request_id"] == r.headers["x-request-id"]
    assert body["data"] is None and body["errors"]
    for error in body["errors"]:
        ext = error["extensions"]
        assert ext["type"] == f"/problems/{type_code}" and ext["status"] == status
        assert ext["detail"] == error["message"] and ext["title"]
        assert ext["request_id"] == r.headers["x-request-id"]
    return dict(body["errors"][0]["extensions"])


def refused(r: httpx.Response) -> None:
    """Refused as a whole before anything ran: past the parser's token limit (400) or a bound (422)."""
    assert r.status_code in (400, 422) and r.json()["data"] is None, r.text


def leak_free(r: httpx.Response) -> None:
    lowered = r.text.lower()
    assert not [word for word in LEAKS if word in lowered], r.text


async def audit_count(runtime: Runtime) -> int:
    async with runtime.engine.connect() as conn:
        return int(await conn.scalar(text("select count(*) from audit_event where action = 'flows-read'")) or 0)


# --- size and cost --------------------------------------------------------------------------------------------


async def test_a_deep_query_is_refused_before_it_is_validated(client: httpx.AsyncClient) -> None:
    deep = "{ wellbeingWheel { indicators { questions { child { a { b { c { d { e } } } } } } } } }"
    ext = problem(await gql(client, deep), 422, "invalid-input")
    assert "deep" in ext["detail"] and ext["errors"][0]["pointer"] == "query"
    # Fragments spread in fragments, past what any query needs (and what a recursive walk could take).
    chain = "".join(f"fragment F{i} on Indicator {{ goals ...F{i + 1} }}\n" for i in range(150))
    chained = "{ wellbeingWheel { indicators { ...F0 } } }\n" + chain + "fragment F150 on Indicator { code }"
    assert "deep" in problem(await gql(client, chained), 422, "invalid-input")["detail"]


async def test_fragments_spread_twice_at_every_level_are_measured_once(client: httpx.AsyncClient) -> None:
    """Strawberry's depth and alias limiters walk each spread again: 2^30 walks here. Measured once per
    fragment, the request is refused at once for what it would expand to."""
    fan = "".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(30))
    query = "{ ...F0 }\n" + fan + "fragment F30 on Query { v: vocabularies { name } }"
    ext = problem(await gql(client, query), 422, "invalid-input")
    assert "aliases" in ext["detail"] and "more than a billion" in ext["detail"]


async def test_a_thousand_aliases_without_a_token_are_refused(client: httpx.AsyncClient) -> None:
    thousand = "{ " + " ".join(f"a{i}: vocabularies {{ name }}" for i in range(1000)) + " }"
    problem(await gql(client, thousand), 400, "malformed-request")  # past the parser's token limit
    # Under the token limit, the alias limit holds.
    aliases = "{ " + " ".join(f"a{i}: vocabularies {{ name }}" for i in range(21)) + " }"
    ext = problem(await gql(client, aliases), 422, "invalid-input")
    assert ext["detail"] == "The query uses 21 aliases; at most 20 are allowed."
    twenty = "{ " + " ".join(f"a{i}: vocabularies {{ name }}" for i in range(20)) + " }"
    r = await gql(client, twenty)
    assert r.status_code == 200 and len(r.json()["data"]) == 20


async def test_aliased_flow_queries_are_refused_and_write_no_audit_entry(
    client: httpx.AsyncClient, auth: Auth, runtime: Runtime, registry: None
) -> None:
    coordinator = auth(COORDINATOR, "coordinator")
    before = await audit_count(runtime)
    many = "{ " + " ".join(f"f{i}: {FLOW}" for i in range(200)) + " }"
    refused(await gql(client, many, coordinator))
    fifty = "{ " + " ".join(f"f{i}: {FLOW}" for i in range(50)) + " }"
    assert "aliases" in problem(await gql(client, fifty, coordinator), 422, "invalid-input")["detail"]
    # Under the alias limit, the cost limit: a flow table costs 50 points of the 500 a request may spend.
    ten = "{ " + " ".join(f"f{i}: {FLOW}" for i in range(10)) + " }"
    ext = problem(await gql(client, ten, coordinator), 422, "invalid-input")
    assert "costs" in ext["detail"]
    assert await audit_count(runtime) == before
    two = "{ " + " ".join(f"f{i}: {FLOW}" for i in range(2)) + " }"
    r = await gql(client, two, coordinator)
    assert r.status_code == 200 and r.json()["data"]["f1"]["__typename"] == "FlowTable", r.text
    assert await audit_count(runtime) == before + 2


async def test_an_organisation_over_its_budget_per_minute_is_refused(
    settings: Settings, runtime: Runtime, auth: Auth, registry: None
) -> None:
    """A budget of 120 points a minute: two flow tables (51 points each) fit, the third waits."""
    async with serve(settings.model_copy(update={"graphql_cost_per_minute": 120}), runtime) as client:
        coordinator = auth(COORDINATOR, "coordinator")
        before = await audit_count(runtime)
        answers = [await gql(client, "{ " + FLOW + " }", coordinator) for _ in range(3)]
        assert [r.status_code for r in answers[:2]] == [200, 200]
        ext = problem(answers[2], 429, "rate-limited")
        assert int(answers[2].headers["retry-after"]) >= 1 and "budget" in ext["detail"]
        assert await audit_count(runtime) == before + 2
        # Another organisation's budget is its own.
        assert (await gql(client, "{ me { __typename } }", auth(SCHOOL, "system"))).status_code == 200


# --- text PostgreSQL cannot hold ---------------------------------------------------------------------------


async def test_nul_in_a_string_literal_is_refused_naming_the_argument(
    client: httpx.AsyncClient, auth: Auth, registry: None
) -> None:
    query = '{ services(q: "a\\u0000b") { __typename } }'
    r = await gql(client, query, auth(SCHOOL))
    ext = problem(r, 422, "invalid-input")
    leak_free(r)
    assert [e["pointer"] for e in ext["errors"]] == ["services.q"] and "NUL" in ext["detail"]
    # Public fields too, and inside input objects.
    ext = problem(await gql(client, '{ codeSystem(name: "x\\u0000") { __typename } }'), 422, "invalid-input")
    assert ext["errors"][0]["pointer"] == "codeSystem.name"
    flows = '{ flowCounts(by: ["kind"], filter: {municipalities: ["18\\u000084"]}) { __typename } }'
    ext = problem(await gql(client, flows, auth(COORDINATOR, "coordinator")), 422, "invalid-input")
    assert ext["errors"][0]["pointer"] == "flowCounts.filter.municipalities[0]"
    long = '{ codeSystem(name: "' + "x" * 1001 + '") { __typename } }'
    ext = problem(await gql(client, long), 422, "invalid-input")
    assert "longer than 1000" in ext["detail"]


def refused_fields(r: httpx.Response) -> list[str]:
    """The pointers a 422 names, whether the request's edge refused it (problem+json) or GraphQL did."""
    assert r.status_code == 422, r.text
    body = r.json()
    if "errors" in body and "data" in body:
        body = body["errors"][0]["extensions"]
    return [e["pointer"] for e in body.get("errors", [])]


@pytest.mark.parametrize("value", ["a\u0000b", "a\ud800b"], ids=["nul", "lone-surrogate"])
async def test_nul_or_a_lone_surrogate_in_a_variable_is_refused(
    client: httpx.AsyncClient, auth: Auth, registry: None, value: str
) -> None:
    query = "query($q: String) { services(q: $q) { __typename } }"
    body = json.dumps({"query": query, "variables": {"q": value}})  # ASCII: \u escapes, as a client sends
    r = await client.post("/graphql", content=body, headers={**auth(SCHOOL), "Content-Type": "application/json"})
    leak_free(r)
    assert any(p.endswith("q") for p in refused_fields(r)), r.text


async def test_overlong_text_and_lists_in_variables_are_refused(
    client: httpx.AsyncClient, auth: Auth, registry: None
) -> None:
    query = "query($q: String, $d: [String!]) { services(q: $q, dimensions: $d) { __typename } }"
    ext = problem(await gql(client, query, auth(SCHOOL), q="x" * 1001), 422, "invalid-input")
    assert [e["pointer"] for e in ext["errors"]] == ["$q"] and "longer than 1000" in ext["detail"]
    ext = problem(await gql(client, query, auth(SCHOOL), d=["safe"] * 1001), 422, "invalid-input")
    assert [e["pointer"] for e in ext["errors"]] == ["$d"]


async def test_a_database_error_is_masked_and_logged_by_class_only(
    client: httpx.AsyncClient,
    auth: Auth,
    owner_runtime: Runtime,
    registry: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with owner_runtime.engine.begin() as conn:
        await conn.execute(text("alter table service rename to service_elsewhere"))
    try:
        with caplog.at_level(logging.INFO):
            r = await gql(client, '{ services(q: "distinctive-search-text") { __typename } }', auth(SCHOOL))
    finally:
        async with owner_runtime.engine.begin() as conn:
            await conn.execute(text("alter table service_elsewhere rename to service"))
    ext = problem(r, 500, "internal-error")
    leak_free(r)
    assert "service_elsewhere" not in r.text and "distinctive" not in r.text and "Programming" not in r.text
    assert ext["detail"] == "The hub failed to handle this request; it has been logged."
    logged = "\n".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    assert "error_class" in logged and "distinctive-search-text" not in logged and "service_elsewhere" not in logged


async def test_a_hub_error_keeps_its_detail(client: httpx.AsyncClient) -> None:
    ext = problem(await gql(client, '{ wellbeingWheel(version: "0.0.0") { version } }'), 404, "not-found")
    assert "0.0.0" in ext["detail"]


async def test_what_strawberry_refuses_itself_is_a_problem(client: httpx.AsyncClient) -> None:
    r = await client.post("/graphql", json={"query": 5})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert r.json()["type"] == "/problems/malformed-request"
    r = await client.post("/graphql", json=[{"query": "{ vocabularies { name } }"}] * 2)  # no batching
    assert r.status_code == 400 and r.json()["type"] == "/problems/malformed-request"


# --- who may ask ---------------------------------------------------------------------------------------------


async def test_a_request_refused_as_a_whole_answers_401_or_403(
    client: httpx.AsyncClient, auth: Auth, registry: None
) -> None:
    r = await gql(client, "{ me { __typename } services { __typename } }")
    ext = problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer") and "bearer token" in ext["detail"]
    r = await gql(client, "{ me { __typename } }", {"Authorization": "Bearer not.a.jwt"})
    problem(r, 401, "unauthenticated")
    ext = problem(await gql(client, "{ " + FLOW + " }", auth(SCHOOL, "system")), 403, "forbidden")
    assert ext["detail"] == "flowCounts needs the role coordinator."
    # A field the caller may use among the request's fields: the request runs, the others say why not.
    r = await gql(client, "{ " + FLOW + " me { __typename } }", auth(SCHOOL, "system"))
    assert r.status_code == 200 and r.json()["data"]["flowCounts"]["__typename"] == "ForbiddenProblem"


async def test_public_vocabulary_needs_no_token_even_beside_guarded_fields(client: httpx.AsyncClient) -> None:
    r = await gql(client, "{ vocabularies { name } wellbeingWheel(lang: en) { version } }")
    assert r.status_code == 200 and r.json()["data"]["vocabularies"], r.text
    r = await gql(client, "{ vocabularies { name } me { __typename ... on AuthenticationProblem { detail } } }")
    data = r.json()["data"]
    assert r.status_code == 200 and data["vocabularies"] and data["me"]["__typename"] == "AuthenticationProblem"


# --- outside dev mode ----------------------------------------------------------------------------------------


@pytest.fixture
def signing_key(tmp_path: Path) -> tuple[bytes, Path]:
    """An identity provider's key pair: the private key signs, the hub trusts the public one."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = tmp_path / "idp.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def serve(settings: Settings, runtime: Runtime):  # type: ignore[no-untyped-def]
    """A second app on the test database, built with other settings."""

    class _Served:
        async def __aenter__(self) -> httpx.AsyncClient:
            self.app: FastAPI = create_app(settings, runtime=runtime)
            self.lifespan = self.app.router.lifespan_context(self.app)
            await self.lifespan.__aenter__()
            self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://hub.test")
            return self.client

        async def __aexit__(self, *exc: object) -> None:
            await self.client.aclose()
            await self.lifespan.__aexit__(*exc)

    return _Served()


@pytest.fixture
async def production(
    settings: Settings, runtime: Runtime, signing_key: tuple[bytes, Path], registry: None
) -> AsyncIterator[httpx.AsyncClient]:
    prod = settings.model_copy(update={"dev_mode": False, "jwt_public_key_file": signing_key[1]})
    async with serve(prod, runtime) as client:
        yield client


async def test_introspection_and_suggestions_are_off_outside_dev_mode(
    production: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    for query in ("{ __schema { types { name } } }", '{ __type(name: "Query") { name } }'):
        ext = problem(await gql(production, query), 422, "invalid-input")
        assert "introspection" in ext["detail"].lower()
    typo = "{ wellbeingWheel { versio } }"
    ext = problem(await gql(production, typo), 422, "invalid-input")
    assert "versio" in ext["detail"] and "Did you mean" not in ext["detail"]
    typo_enum = "{ vocabularies(lang: eng) { name } }"
    assert "Did you mean" not in problem(await gql(production, typo_enum), 422, "invalid-input")["detail"]
    # In dev mode both stay, for the people building against the hub: the explorer's schema query fits the
    # bounds, and introspection that fans out (every type's fields' types' fields…) is bounded like the rest.
    assert "Did you mean" in problem(await gql(client, typo), 422, "invalid-input")["detail"]
    full = get_introspection_query(descriptions=True, specified_by_url=True, input_value_deprecation=True)
    r = await gql(client, full)
    assert r.status_code == 200 and r.json()["data"]["__schema"]["queryType"]["name"] == "Query", r.status_code
    fan_out = "{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }"
    assert "deep" in problem(await gql(client, fan_out), 422, "invalid-input")["detail"]


async def test_no_explorer_and_no_docs_outside_dev_mode(
    production: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    html = {"Accept": "text/html"}
    r = await production.get("/graphql", headers=html)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert (await production.get("/docs")).status_code == 404
    assert (await production.get("/openapi.json")).status_code == 200  # the contract is public (and committed)
    assert (await client.get("/graphql", headers=html)).status_code == 200
    assert (await client.get("/docs")).status_code == 200


async def test_outside_dev_mode_public_fields_answer_and_tokens_are_the_identity_providers(
    production: httpx.AsyncClient, settings: Settings, signing_key: tuple[bytes, Path], token: Callable[..., str]
) -> None:
    r = await gql(production, "{ wellbeingWheel(lang: en) { indicators { code } } }")
    assert r.status_code == 200 and len(r.json()["data"]["wellbeingWheel"]["indicators"]) == 8
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "system:elevdata",
        "org_id": SCHOOL,
        "roles": ["system"],
        "iat": now,
        "exp": now + 300,
    }
    signed = jwt.encode(claims, signing_key[0].decode(), algorithm="RS256")
    me = "{ me { ... on Me { organisationId } } }"
    r = await gql(production, me, {"Authorization": f"Bearer {signed}"})
    assert r.status_code == 200 and r.json()["data"]["me"] == {"organisationId": SCHOOL}, r.text
    problem(await gql(production, me, {"Authorization": f"Bearer {token(SCHOOL)}"}), 401, "unauthenticated")


# --- any query the schema allows ------------------------------------------------------------------------------

EXAMPLES_PER_FIELD = 25  # bounded by examples, drawn deterministically: ~400 requests
CALLERS = {
    "system": ("nora-elevhalsa", "system"),
    "professional": ("nora-grundskola", "professional"),
    "coordinator": ("region-samordning", "coordinator"),
}


@pytest.fixture
def fuzzed_graphql(settings: Settings, registry: None) -> Iterator[Any]:
    """The GraphQL schema (introspected, dev mode) of a second app on the same database, opened in the event
    loop of schemathesis' own thread (asyncpg connections belong to the loop that made them)."""
    app = create_app(settings.model_copy(update={"serve_runs_worker": False}))
    try:
        yield schemathesis.graphql.from_asgi("/graphql", app)
    finally:
        schemathesis_asgi.shutdown_lifespans()


def test_no_query_the_schema_allows_answers_a_server_error(fuzzed_graphql: Any, settings: Settings) -> None:
    """Every root field, with arguments hypothesis-graphql draws from the schema, as each role and as no one:
    never a 5xx nor an internal error masked inside a 200, and every error a problem."""
    tokens: dict[str | None, dict[str, str]] = {None: {}}
    for role, (org, granted) in CALLERS.items():
        token = mint_dev_token(settings, organisation_id=org, roles=[granted])
        tokens[role] = {"Authorization": f"Bearer {token}"}
    failures: dict[tuple[str, int], str] = {}
    operations = [result.ok() for result in fuzzed_graphql.get_all_operations()]
    assert len(operations) >= 16

    for operation in operations:

        @given(case=operation.as_strategy(), caller=st.sampled_from(list(tokens)))
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_FIELD,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: Any, caller: str | None) -> None:
            response = case.call(headers={**(case.headers or {}), **tokens[caller]})
            types = [(e.get("extensions") or {}).get("type") for e in response.json().get("errors") or []]
            if response.status_code >= 500 or None in types or "/problems/internal-error" in types:
                failures.setdefault((case.operation.label, response.status_code), f"as {caller}: {case.body}")

        probe()

    assert not failures, "\n".join(f"{label} {status}: {query}" for (label, status), query in failures.items())
