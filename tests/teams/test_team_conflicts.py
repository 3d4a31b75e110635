"""Bad input and conflicts on the team around the child (issue #12, section 3), through HTTP: every error
problem+json with a stable type, a detail and the offending field or the state it clashes with."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.referrals.helpers import CHILD
from tests.teams.test_team_story import NEXT_SCHOOL, PIN, SCHOOL, SOCIAL, child, name_school, offer, team

PROBLEM = "application/problem+json"


@pytest.fixture
async def county(client: httpx.AsyncClient, runtime: Runtime) -> Runtime:
    async with runtime.sessions() as session:
        await load_demo(session)
    return runtime


def problem(r: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["type"] == f"/problems/{type_}" and body["detail"]
    assert CHILD not in r.text and "201503112383" not in r.text  # the number is never echoed
    return body


async def test_an_invalid_personal_identity_number_is_422_at_its_field_in_body_and_header(client, auth, county) -> None:
    body = problem(
        await name_school(client, auth, child={"personal_identity_number": "20150311-2384"}), 422, "invalid-input"
    )
    assert [e["pointer"] for e in body["errors"]] == ["/child/personal_identity_number"]
    r = await client.get(
        "/v1/children/team", headers={**auth(SCHOOL), "Child-Personal-Identity-Number": "20150311-2384"}
    )
    assert [e["pointer"] for e in problem(r, 422, "invalid-input")["errors"]] == ["Child-Personal-Identity-Number"]


async def test_overlapping_named_person_periods_are_409_with_the_conflicting_assignment(client, auth, county) -> None:
    assert (await name_school(client, auth, period={"start": "2026-08-15T08:00:00+02:00"})).status_code == 201
    other = "lindesberg-grundskola"
    r = await name_school(client, auth, org=other, period={"start": "2027-01-10T08:00:00+01:00"})
    conflicting = problem(r, 409, "conflict")["current"]["conflicting_assignment"]
    assert (conflicting["organisation_id"], conflicting["role"], conflicting["stage"]) == (
        SCHOOL,
        "named-person",
        "school",
    )
    # A period that ends before the next one starts does not overlap.
    r = await name_school(
        client, auth, org=other, period={"start": "2025-01-01T00:00:00+01:00", "end": "2026-08-15T08:00:00+02:00"}
    )
    assert r.status_code == 204, r.text  # recorded; a period already over puts no one on the team now
    seen = (await team(client, auth, SCHOOL)).json()
    assert [a["organisation"]["organisation_id"] for a in seen["assignments"]] == [other, SCHOOL]


async def test_a_named_person_of_the_wrong_organisation_type_for_the_stage_is_422_at_stage(
    client, auth, county
) -> None:
    body = problem(await name_school(client, auth, stage="upper-secondary"), 422, "invalid-input")
    assert [e["pointer"] for e in body["errors"]] == ["/stage"]
    body = problem(await name_school(client, auth, stage="no-such-stage"), 422, "invalid-input")
    assert body["errors"][0]["code"] == "unknown-code"


async def test_accepting_a_withdrawn_or_answered_offer_is_409_with_its_current_state(client, auth, county) -> None:
    await name_school(client, auth)
    first = (await offer(client, auth)).json()["id"]
    # One open offer at a time.
    assert problem(await offer(client, auth), 409, "conflict")["current"]["offer"]["offer_id"] == first
    r = await client.post(f"/v1/children/team/offers/{first}/withdraw", headers=auth(SCHOOL))
    assert r.status_code == 200 and r.json()["state"] == "withdrawn"
    r = await client.post(f"/v1/children/team/offers/{first}/accept", headers=auth(NEXT_SCHOOL))
    assert problem(r, 409, "conflict")["current"]["offer"]["state"] == "withdrawn"

    second = (await offer(client, auth)).json()["id"]
    r = await client.post(
        f"/v1/children/team/offers/{second}/decline", json={"reason": "no place"}, headers=auth(NEXT_SCHOOL)
    )
    assert r.status_code == 200 and r.json()["state"] == "declined"
    r = await client.post(f"/v1/children/team/offers/{second}/accept", headers=auth(NEXT_SCHOOL))
    assert problem(r, 409, "conflict")["current"]["offer"]["state"] == "declined"
    # The declined offer stays visible to both; the school is still the named person.
    for org in (SCHOOL, NEXT_SCHOOL):
        r = await client.get(f"/v1/children/team/offers/{second}", headers=auth(org))
        assert r.status_code == 200 and r.json()["reason"] == "no place"
    seen = (await team(client, auth, SCHOOL)).json()
    assert [o["state"] for o in seen["offers"]] == ["withdrawn", "declined"]
    assert seen["named_person"]["organisation"]["organisation_id"] == SCHOOL
    # Someone else's offer, or no offer: the same 404.
    for offer_id in (second, "00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        r = await client.get(f"/v1/children/team/offers/{offer_id}", headers=auth(SOCIAL))
        problem(r, 404, "not-found")


async def test_organisations_off_the_team_get_404_and_roles_are_kept(client, auth, county) -> None:
    # No team at all and a team one is not on: the same answer.
    no_team = problem(await team(client, auth, SCHOOL), 404, "not-found")
    await name_school(client, auth)
    not_member = problem(await team(client, auth, SOCIAL), 404, "not-found")
    assert no_team["detail"] == not_member["detail"]
    for path, body in (
        ("/v1/children/team/lead-professional", child(organisation_id=SOCIAL)),
        ("/v1/children/team/participants", child(organisation_id=NEXT_SCHOOL, reason="x")),
        ("/v1/children/team/family-choices", child(about="plan", choice="declined", chosen_by="guardian")),
    ):
        problem(await client.post(path, json=body, headers=auth(SOCIAL)), 404, "not-found")
    # The named person appoints only a member as lead professional: another organisation is 404 at its field.
    r = await client.post(
        "/v1/children/team/lead-professional", json=child(organisation_id=SOCIAL), headers=auth(SCHOOL)
    )
    assert [e["pointer"] for e in problem(r, 404, "not-found")["errors"]] == ["/organisation_id"]
    # An unknown organisation to add or offer to is 404 at its field.
    r = await client.post(
        "/v1/children/team/participants", json=child(organisation_id="no-such-org", reason="x"), headers=auth(SCHOOL)
    )
    assert [e["pointer"] for e in problem(r, 404, "not-found")["errors"]] == ["/organisation_id"]
    r = await offer(client, auth, to="no-such-org")
    assert [e["pointer"] for e in problem(r, 404, "not-found")["errors"]] == ["/to_organisation"]
    # A participant does not hand the named person's role over.
    await client.post(
        "/v1/children/team/participants", json=child(organisation_id=SOCIAL, reason="sip"), headers=auth(SCHOOL)
    )
    problem(await offer(client, auth, by=SOCIAL), 403, "forbidden")


async def test_one_lead_professional_at_a_time_and_the_familys_choice_blocks_nothing(client, auth, county) -> None:
    await name_school(client, auth)
    await client.post(
        "/v1/children/team/participants", json=child(organisation_id=SOCIAL, reason="sip"), headers=auth(SCHOOL)
    )
    r = await client.post(
        "/v1/children/team/family-choices",
        json=child(about="lead-professional", choice="declined", chosen_by="guardian"),
        headers=auth(SOCIAL),
    )
    assert r.status_code == 201 and r.json()["family_choices"][0]["choice"] == "declined", r.text
    r = await client.post(
        "/v1/children/team/lead-professional", json=child(organisation_id=SOCIAL), headers=auth(SCHOOL)
    )
    assert r.status_code == 201, r.text  # recorded, not blocking
    r = await client.post(
        "/v1/children/team/lead-professional", json=child(organisation_id=SCHOOL), headers=auth(SCHOOL)
    )
    assert problem(r, 409, "conflict")["current"]["conflicting_assignment"]["organisation_id"] == SOCIAL
    # No lead professional to end: 409 with what there is.
    assert (
        await client.post("/v1/children/team/lead-professional/end", json=child(), headers=auth(SCHOOL))
    ).status_code == 200
    r = await client.post("/v1/children/team/lead-professional/end", json=child(), headers=auth(SCHOOL))
    assert problem(r, 409, "conflict")["current"] == {"lead_professional": None}


async def test_the_pin_never_travels_in_a_url(client, auth, county) -> None:
    await name_school(client, auth)
    r = await client.get("/v1/children/team", params={"personal_identity_number": CHILD}, headers=auth(SCHOOL))
    assert r.status_code == 422  # the header is required; a query parameter is not read
    assert (await client.get("/v1/children/team", headers={**auth(SCHOOL), **PIN})).status_code == 200


TEAM_QUERY = """{ team { __typename
  ... on Team { id namedPerson { stage organisation { organisationId } }
                members { organisation { organisationId } roles } responsible { role returned } }
  ... on NotFoundProblem { detail } ... on InvalidInputProblem { fields } } }"""


async def test_graphql_shows_members_the_same_team_and_everyone_else_not_found(client, auth, county) -> None:
    rest = (await name_school(client, auth)).json()

    async def ask(org: str, *roles: str, pin: dict[str, str] = PIN) -> dict[str, Any]:
        r = await client.post("/graphql", json={"query": TEAM_QUERY}, headers={**auth(org, *roles), **pin})
        assert r.status_code == 200, r.text
        return dict(r.json()["data"]["team"])

    seen = await ask(SCHOOL)
    assert seen["__typename"] == "Team" and seen["id"] == rest["id"]
    assert seen["namedPerson"] == {"stage": "school", "organisation": {"organisationId": SCHOOL}}
    assert seen["members"] == [{"organisation": {"organisationId": SCHOOL}, "roles": ["named-person"]}]
    for org, roles in ((SOCIAL, ("system",)), ("region-samordning", ("coordinator",))):
        assert (await ask(org, *roles))["__typename"] == "NotFoundProblem"
    assert (await ask(SCHOOL, pin={}))["fields"] == ["Child-Personal-Identity-Number"]
