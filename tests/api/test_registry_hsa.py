"""HSA-ids and organisation numbers in the registry: validated at the field, unique, found by HSA-id in
REST and GraphQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem

Auth = Callable[..., dict[str, str]]
SCHOOL, REGION = "nora-grundskola", "region-samordning"
HSA = "SE2321000164-E77"
CHILD = "20150311-2383"


@pytest.fixture
async def demo(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)


def org(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Elevhälsan Hagby (test)",
        "type": "elevhalsa",
        "municipality_code": "1884",
        "region_code": "18",
        "hsa_id": HSA,
        "organisation_number": "232100-0164",
    }
    body.update(over)
    return body


async def test_hsa_id_and_organisation_number_are_stored_and_found(
    client: httpx.AsyncClient,
    auth: Auth,
    demo: None,
) -> None:
    r = await client.put("/v1/registry/organisations/hagby-elevhalsa", json=org(), headers=auth(REGION, "admin"))
    assert r.status_code == 201, r.text
    assert (r.json()["hsa_id"], r.json()["organisation_number"]) == (HSA, "2321000164")
    found = await client.get("/v1/registry/organisations", params={"hsa_id": HSA}, headers=auth(SCHOOL))
    assert [o["id"] for o in found.json()["items"]] == ["hagby-elevhalsa"]
    none = await client.get("/v1/registry/organisations", params={"hsa_id": "SE2321000164-NOONE"}, headers=auth(SCHOOL))
    assert none.json()["items"] == []
    query = "query($h: String!) { organisationByHsaId(hsaId: $h) { __typename ... on Organisation { id hsaId "
    query += "organisationNumber } ... on InvalidInputProblem { fields } } }"
    r = await client.post("/graphql", json={"query": query, "variables": {"h": HSA}}, headers=auth(SCHOOL))
    assert r.json()["data"]["organisationByHsaId"] == {
        "__typename": "Organisation",
        "id": "hagby-elevhalsa",
        "hsaId": HSA,
        "organisationNumber": "2321000164",
    }
    r = await client.post("/graphql", json={"query": query, "variables": {"h": "SE23-x"}}, headers=auth(SCHOOL))
    assert r.json()["data"]["organisationByHsaId"] == {"__typename": "InvalidInputProblem", "fields": ["hsa_id"]}


async def test_bad_identifiers_are_refused_at_their_field_saying_what_is_wrong(
    client: httpx.AsyncClient,
    auth: Auth,
    demo: None,
) -> None:
    admin = auth(REGION, "admin")
    cases = [
        ({"hsa_id": "NO2321000164-E77"}, "/hsa_id", "hsa-id-country"),
        ({"hsa_id": "SE2321000165-E77"}, "/hsa_id", "hsa-id-check-digit"),
        ({"hsa_id": "SE2321000164-Ö77"}, "/hsa_id", "hsa-id-suffix"),
        ({"organisation_number": "232100-0165"}, "/organisation_number", "organisation-number-check-digit"),
        ({"organisation_number": "23210"}, "/organisation_number", "organisation-number-format"),
    ]
    for over, pointer, code in cases:
        r = await client.put("/v1/registry/organisations/hagby-elevhalsa", json=org(**over), headers=admin)
        body = assert_problem(r, 422, "invalid-input")
        assert [(e["pointer"], e["code"]) for e in body["errors"]] == [(pointer, code)], over
    bad_query = await client.get("/v1/registry/organisations", params={"hsa_id": "SE1"}, headers=auth(SCHOOL))
    assert [e["pointer"] for e in assert_problem(bad_query, 422, "invalid-input")["errors"]] == ["hsa_id"]


async def test_an_hsa_id_belongs_to_one_organisation(
    client: httpx.AsyncClient,
    auth: Auth,
    demo: None,
) -> None:
    admin = auth(REGION, "admin")
    assert (await client.put("/v1/registry/organisations/hagby-a", json=org(), headers=admin)).status_code == 201
    r = await client.put("/v1/registry/organisations/hagby-b", json=org(), headers=admin)
    body = assert_problem(r, 409, "conflict")
    assert [e["code"] for e in body["errors"]] == ["hsa-id-taken"]
    again = await client.put("/v1/registry/organisations/hagby-a", json=org(name="Ny"), headers=admin)
    assert again.status_code == 200, again.text  # its own HSA-id is no clash


async def test_a_deciding_professionals_hsa_id_is_checked(
    client: httpx.AsyncClient,
    auth: Auth,
    demo: None,
) -> None:
    """A reference that is an HSA-id (it starts like one) must be a valid one; a local id passes."""
    body = {
        "child": {"personal_identity_number": CHILD},
        "recipient_organisation": "region-bup",
        "decided_by_person": "SE2321000017-ABCD",
        "decided_by_role": "rektor",
        "justification": "Akut risk; BUP behöver skolans bild i dag.",
        "case_reference": "EH-2026-77",
        "data_categories": ["identity", "school-situation"],
    }
    professional = auth("nora-elevhalsa", "professional")
    r = await client.post("/v1/necessity-assessments", json=body, headers=professional)
    errors = assert_problem(r, 422, "invalid-input")["errors"]
    assert [(e["pointer"], e["code"]) for e in errors] == [("/decided_by_person", "hsa-id-check-digit")]
    assert "SE2321000017" not in r.text
    for fine in ("SE2321000016-ABCD", "elevhalsa-rektor-7"):
        r = await client.post(
            "/v1/necessity-assessments", json={**body, "decided_by_person": fine}, headers=professional
        )
        assert r.status_code == 201, r.text


async def test_two_organisations_racing_for_one_hsa_id_get_one_201_and_one_409(
    client: httpx.AsyncClient, auth: Auth, demo: None
) -> None:
    admin = auth(REGION, "admin")
    answers = await asyncio.gather(
        *(client.put(f"/v1/registry/organisations/race-{n}", json=org(), headers=admin) for n in range(4))
    )
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
