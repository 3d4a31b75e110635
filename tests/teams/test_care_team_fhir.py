"""FHIR R4 CareTeam for the team's members: valid by fhir.resources R4B; read by id and searched with the
child in a header; a non-member's read is 404 and its search finds nothing."""

from __future__ import annotations

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.careteam import CareTeam

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.teams.test_team_story import PIN, SCHOOL, SOCIAL, child, name_school


@pytest.fixture
async def county(client: httpx.AsyncClient, runtime: Runtime) -> Runtime:
    async with runtime.sessions() as session:
        await load_demo(session)
    return runtime


async def test_members_read_and_search_a_valid_care_team_and_others_find_nothing(client, auth, county) -> None:
    team_id = (await name_school(client, auth)).json()["id"]
    await client.post(
        "/v1/children/team/participants", json=child(organisation_id=SOCIAL, reason="sip"), headers=auth(SCHOOL)
    )

    r = await client.get(f"/fhir/r4/CareTeam/{team_id}", headers=auth(SOCIAL))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json"), r.text
    resource = CareTeam.model_validate(r.json())
    assert resource.id == team_id and resource.subject.identifier.value  # the pseudonym
    assert "2383" not in r.text
    members = [(p.member.identifier.value, p.role[0].text) for p in resource.participant]
    assert members == [(SCHOOL, "Named person"), (SOCIAL, "Participant (sip)")]
    assert resource.participant[0].role[0].coding[0].code == "school"
    assert resource.managingOrganization[0].identifier.value == SCHOOL

    r = await client.get("/fhir/r4/CareTeam", headers={**auth(SCHOOL), **PIN})
    bundle = Bundle.model_validate(r.json())
    assert bundle.total == 1 and bundle.entry[0].resource.id == team_id

    for org, roles in (("nora-vardcentral", ("system",)), ("region-samordning", ("coordinator",))):
        assert (await client.get(f"/fhir/r4/CareTeam/{team_id}", headers=auth(org, *roles))).status_code == 404
        r = await client.get("/fhir/r4/CareTeam", headers={**auth(org, *roles), **PIN})
        assert r.status_code == 200 and r.json()["total"] == 0 and r.json()["entry"] == []


async def test_the_capability_statement_declares_care_team(client, county) -> None:
    r = await client.get("/fhir/r4/metadata")
    [care_team] = [res for res in r.json()["rest"][0]["resource"] if res["type"] == "CareTeam"]
    assert {i["code"] for i in care_team["interaction"]} == {"read", "search-type"}


async def test_a_member_with_an_hsa_id_is_named_by_it(client, auth, county) -> None:
    """HL7 Sweden's identifier system for a unit the registry knows by HSA-id; the hub's id otherwise."""
    from sqlalchemy import text

    async with county.sessions() as session:
        await session.execute(text("update organisation set hsa_id = 'SE2321000164-E1' where id = :id"), {"id": SCHOOL})
        await session.commit()
    team_id = (await name_school(client, auth)).json()["id"]
    await client.post(
        "/v1/children/team/participants", json=child(organisation_id=SOCIAL, reason="sip"), headers=auth(SCHOOL)
    )
    resource = CareTeam.model_validate((await client.get(f"/fhir/r4/CareTeam/{team_id}", headers=auth(SOCIAL))).json())
    named = {p.member.identifier.system: p.member.identifier.value for p in resource.participant}
    assert named["urn:oid:1.2.752.29.4.19"] == "SE2321000164-E1"
    assert SOCIAL in named.values()  # no HSA-id in the registry: the hub's id
