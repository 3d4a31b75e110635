"""Input an attacker sends to make the hub fail: NUL bytes, lone surrogates, absurd nesting, huge ids.

Every one must come back as a 4xx problem+json that names the offending field and carries the request
id, on REST, GraphQL and FHIR alike; none may reach PostgreSQL (which refuses NUL and unpaired surrogates
and would answer 500).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from hub.config import Settings
from hub.devtools.demo import load_demo
from hub.main import create_app
from hub.runtime import Runtime
from tests.loopback import free_port

Auth = Callable[..., dict[str, str]]
SCHOOL, ELEVHALSA = "nora-grundskola", "nora-elevhalsa"
CHILD = "20150311-2383"
LONG_ID = "x" * 10_000
SERVICES_QUERY = "query($q: String) { services(q: $q) { __typename } }"


@pytest.fixture
async def demo(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)


def pointers(body: dict[str, Any]) -> list[str]:
    return [e["pointer"] for e in body.get("errors", [])]


def assert_refused(r: httpx.Response, pointer: str) -> dict[str, Any]:
    """A 4xx problem+json with the request id that names ``pointer`` as the offending field."""
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    body = r.json()
    assert body["request_id"] and body["request_id"] == r.headers["x-request-id"]
    assert pointer in pointers(body), body
    return body


def raw_json(text: str, headers: dict[str, str]) -> dict[str, Any]:
    """Send ``text`` byte for byte: json= would have re-encoded the escapes the attack relies on."""
    return {"content": text.encode(), "headers": {**headers, "Content-Type": "application/json"}}


# --- NUL bytes --------------------------------------------------------------------------------------------


async def test_nul_in_a_query_parameter(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    r = await client.get("/v1/registry/services", params={"q": "skola\x00"}, headers=auth(SCHOOL))
    body = assert_refused(r, "q")
    assert body["status"] == 422 and body["type"] == "/problems/invalid-input"
    r = await client.get("/v1/referrals", params={"counterpart": "a\x00b"}, headers=auth(SCHOOL))
    assert_refused(r, "counterpart")


async def test_nul_in_a_path_parameter(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    r = await client.get("/v1/consents/a%00b", headers=auth(SCHOOL))
    assert_refused(r, "consent_id")
    r = await client.get("/v1/registry/organisations/nora%00", headers=auth(SCHOOL))
    assert_refused(r, "organisation_id")
    r = await client.post("/v1/mailbox/m%00/ack", headers=auth(SCHOOL))
    assert_refused(r, "message_id")


async def test_nul_in_a_header(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    headers = {**auth(SCHOOL), "Idempotency-Key": "key\x00"}
    r = await client.post("/v1/referrals", json={}, headers=headers)
    assert_refused(r, "idempotency-key")
    r = await client.get("/v1/vocabulary", headers={"Accept-Language": "sv\x00"})
    assert_refused(r, "accept-language")


async def test_nul_escaped_in_a_json_string(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    question = (
        '{"to_organisation": "region-bup\\u0000", "child": {"personal_identity_number": "' + CHILD + '"},'
        ' "purpose": "remiss", "data_categories": ["identity"]}'
    )
    r = await client.post("/v1/sharing-decisions", **raw_json(question, auth(ELEVHALSA)))
    assert_refused(r, "/to_organisation")
    search = '{"child": {"personal_identity_number": "2015\\u00000311-2383"}}'
    r = await client.post("/v1/consents/search", **raw_json(search, auth(ELEVHALSA)))
    assert_refused(r, "/child/personal_identity_number")
    # In an object key and deep in an array too: the pointer says where.
    r = await client.post("/v1/consents", **raw_json('{"grantors": [{"a": 1}, {"re\\u0000f": 1}]}', auth(ELEVHALSA)))
    assert_refused(r, "/grantors/1/re\\u0000f")


async def test_nul_in_fhir_input(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    r = await client.get("/fhir/r4/CodeSystem", params={"name": "wheel\x00"})
    assert_refused(r, "name")
    r = await client.get("/fhir/r4/AuditEvent/abc%00", headers=auth(SCHOOL, "auditor"))
    assert_refused(r, "id")
    r = await client.get("/fhir/r4/AuditEvent", params={"agent": "x\x00"}, headers=auth(SCHOOL, "auditor"))
    assert_refused(r, "agent")
    body = '{"resourceType": "Parameters", "parameter": [{"name": "code", "valueCode": "tr\\u0000"}]}'
    r = await client.post("/fhir/r4/ConceptMap/$translate", **raw_json(body, {}))
    assert_refused(r, "/parameter/0/valueCode")


async def test_nul_in_graphql_variables(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    body = json.dumps({"query": SERVICES_QUERY, "variables": {"q": "PLACEHOLDER"}}).replace("PLACEHOLDER", "a\\u0000b")
    r = await client.post("/graphql", **raw_json(body, auth(SCHOOL)))
    assert_refused(r, "/variables/q")
    # The same variables in a GET's query string (JSON inside a query parameter).
    r = await client.get(
        "/graphql", params={"query": SERVICES_QUERY, "variables": '{"q": "a\\u0000b"}'}, headers=auth(SCHOOL)
    )
    assert_refused(r, "variables/q")


# --- lone surrogates --------------------------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["\\ud800", "\\uDFFF", "\\udbff x", "\\udc00\\ud800"])
async def test_lone_surrogates_in_json(client: httpx.AsyncClient, auth: Auth, demo: None, escape: str) -> None:
    search = '{"child": {"personal_identity_number": "2015' + escape + '"}}'
    r = await client.post("/v1/consents/search", **raw_json(search, auth(ELEVHALSA)))
    assert_refused(r, "/child/personal_identity_number")
    body = json.dumps({"query": SERVICES_QUERY, "variables": {"q": "PLACEHOLDER"}}).replace("PLACEHOLDER", escape)
    r = await client.post("/graphql", **raw_json(body, auth(SCHOOL)))
    assert_refused(r, "/variables/q")


async def test_surrogates_and_invalid_utf8_as_raw_bytes(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    # Python's JSON parser reads a surrogate's UTF-8 bytes (ED A0 80) as the lone surrogate itself.
    search = b'{"child": {"personal_identity_number": "2015\xed\xa0\x80"}}'
    headers = {**auth(ELEVHALSA), "Content-Type": "application/json"}
    assert_refused(
        await client.post("/v1/consents/search", content=search, headers=headers), "/child/personal_identity_number"
    )
    body = assert_refused(await client.post("/graphql", content=b'{"query": "\xff"}', headers=headers), "")
    assert body["errors"][0]["code"] == "invalid-utf-8"
    # UTF-16 JSON, which Python would parse, hides its escapes from a byte scan: refused whole.
    utf16 = '{"child": {"personal_identity_number": "2015\\u0000"}}'.encode("utf-16")
    assert_refused(await client.post("/v1/consents/search", content=utf16, headers=headers), "")


async def test_paired_surrogates_and_escaped_backslashes_pass(client: httpx.AsyncClient) -> None:
    # An emoji as a surrogate pair is a valid character; "\\u0000" is a backslash and five letters. They
    # reach the handler, which answers as it would for any unknown code.
    body = '{"system": "variant-behovskompassen", "codes": ["\\ud83d\\ude00", "\\\\u0000", "\\\\ud800"]}'
    r = await client.post("/v1/vocabulary/translate", **raw_json(body, {"Accept-Language": "en"}))
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/codes/0", r.text
    assert r.json()["detail"].endswith("\U0001f600, \\u0000, \\ud800")


# --- numbers JSON does not have --------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-2.5E+999"])
async def test_non_finite_numbers(client: httpx.AsyncClient, auth: Auth, demo: None, number: str) -> None:
    # Python's parser reads these; the hub would store them and hand "NaN" on to the receiving system.
    referral = (
        '{"kind": "orosanmalan", "target": {"organisation_id": "nora-socialtjanst-myndighet"},'
        ' "child": {"personal_identity_number": "' + CHILD + '"},'
        ' "concern": {"dimensions": ["safe"], "trappan_step": 1, "text": "Orosanmälan."},'
        ' "data_categories": ["identity", "concern-text", "school-situation"],'
        ' "information": {"school-situation": {"grade": ' + number + "}}}"
    )
    headers = {**auth(SCHOOL), "Idempotency-Key": "non-finite-" + number}
    assert_refused(
        await client.post("/v1/referrals", **raw_json(referral, headers)), "/information/school-situation/grade"
    )
    variables = '{"query": "' + SERVICES_QUERY.replace("String", "Int") + '", "variables": {"q": ' + number + "}}"
    assert_refused(await client.post("/graphql", **raw_json(variables, auth(SCHOOL))), "/variables/q")


async def test_exponents_and_hex_ids_that_are_fine_pass(client: httpx.AsyncClient) -> None:
    body = '{"system": "variant-behovskompassen", "codes": ["3e8f-2e1a"], "weight": 1.5e300}'
    r = await client.post("/v1/vocabulary/translate", **raw_json(body, {}))
    assert r.status_code == 422 and [e["pointer"] for e in r.json()["errors"]] == ["/codes/0"], r.text


# --- nesting ----------------------------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("path", "template", "pointer"),
    [
        ("/v1/consents", '{"grantors": %s}', "/grantors"),
        ("/v1/sharing-decisions", "%s", ""),
        ("/graphql", '{"query": "{ __typename }", "variables": {"q": %s}}', "/variables/q"),
        ("/fhir/r4/ConceptMap/$translate", '{"resourceType": "Parameters", "parameter": %s}', "/parameter"),
    ],
)
async def test_json_nested_100000_deep(
    client: httpx.AsyncClient, auth: Auth, path: str, template: str, pointer: str
) -> None:
    r = await client.post(path, **raw_json(template.replace("%s", nested(100_000)), auth(ELEVHALSA)))
    body = assert_refused(r, pointer)
    assert "deeper" in body["detail"]


async def test_json_nested_100000_deep_in_a_graphql_get(client: httpx.AsyncClient, auth: Auth) -> None:
    params = {"query": SERVICES_QUERY, "variables": '{"q": ' + nested(5_000) + "}"}
    assert_refused(await client.get("/graphql", params=params, headers=auth(SCHOOL)), "variables/q")


async def test_moderate_nesting_still_reaches_validation(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    r = await client.post("/v1/consents", **raw_json('{"grantors": ' + nested(20) + "}", auth(ELEVHALSA)))
    assert r.status_code == 422 and "grantors" in r.text


# --- very long identifiers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "role", "pointer"),
    [
        ("GET", "/v1/consents/{}", "system", "consent_id"),
        ("POST", "/v1/consents/{}/withdraw", "system", "consent_id"),
        ("GET", "/v1/referrals/{}", "system", "referral_id"),
        ("POST", "/v1/mailbox/{}/ack", "system", "message_id"),
        ("GET", "/v1/registry/organisations/{}", "system", "organisation_id"),
        ("PUT", "/v1/registry/organisations/{}/endpoint", "admin", "organisation_id"),
        ("GET", "/v1/registry/services/{}", "system", "service_id"),
        ("DELETE", "/v1/registry/services/{}", "admin", "service_id"),
        ("GET", "/v1/vocabulary/{}", "system", "name"),
        ("GET", "/fhir/r4/AuditEvent/{}", "auditor", "id"),
        ("GET", "/fhir/r4/CodeSystem/{}", "system", "id"),
        ("GET", "/problems/{}", "system", "code"),
    ],
)
async def test_10000_character_ids(
    client: httpx.AsyncClient, auth: Auth, demo: None, method: str, path: str, role: str, pointer: str
) -> None:
    kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
    r = await client.request(method, path.format(LONG_ID), headers=auth(SCHOOL, role), **kwargs)
    assert_refused(r, pointer)


# --- request ids on every problem, 500 included -----------------------------------------------------------


async def test_an_unhandled_error_is_a_problem_with_the_request_id(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)
    broken = APIRouter()

    @broken.get("/test-only/broken")
    async def fail() -> None:
        raise RuntimeError("secret detail SELECT * FROM consent")

    app.include_router(broken)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        r = await c.get("/test-only/broken", headers={"X-Request-ID": "trace-500"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["x-request-id"] == "trace-500"
    body = r.json()
    assert body["request_id"] == "trace-500" and body["type"] == "/problems/internal-error"
    assert "SELECT" not in r.text and "RuntimeError" not in r.text
    assert r.headers["cache-control"] == "no-store"


async def test_every_problem_carries_the_request_id(client: httpx.AsyncClient) -> None:
    for r in (
        await client.get("/v1/me"),
        await client.get("/nothing"),
        await client.delete("/healthz"),
        await client.post("/v1/consents", content=b"{", headers={"Content-Type": "application/json"}),
        await client.post("/v1/consents", content=b"x", headers={"Content-Type": "text/plain"}),
    ):
        assert r.json()["request_id"] == r.headers["x-request-id"], r.text


# --- response headers -------------------------------------------------------------------------------------


async def test_personal_data_is_never_cached(client: httpx.AsyncClient, auth: Auth, demo: None) -> None:
    for r in (
        await client.get("/v1/me", headers=auth(SCHOOL)),
        await client.get("/v1/referrals", headers=auth(SCHOOL)),
        await client.post("/graphql", json={"query": "{ me { organisationId } }"}, headers=auth(SCHOOL)),
        await client.get("/fhir/r4/AuditEvent", headers=auth(SCHOOL, "auditor")),
        await client.get("/v1/consents/unknown", headers=auth(SCHOOL)),
    ):
        assert r.status_code < 500 and r.headers["cache-control"] == "no-store", (r.request.url, r.headers)
    vocabulary = await client.get("/v1/vocabulary/wellbeing-wheel")
    assert vocabulary.headers["cache-control"].startswith("public") and vocabulary.headers["etag"]


def test_hub_serve_sends_no_server_banner(settings: Settings, pg_url: str, data_dir: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HUB_DATABASE_URL": pg_url,
        "HUB_DATA_DIR": str(data_dir),
        "HUB_APPLY_MIGRATIONS_ON_START": "false",
        "HUB_SERVE_RUNS_WORKER": "false",
        "HUB_DEV_MODE": "true",
    }
    hub = str(Path(sys.executable).with_name("hub"))
    proc = subprocess.Popen(
        [hub, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "hub serve did not start"
                time.sleep(0.1)
        assert r.status_code == 200
        assert "server" not in r.headers, r.headers
        assert r.headers["x-request-id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
