"""FHIR R4 CarePlan per plan version for the team's members, valid by fhir.resources R4B, with only the
sections the reader may see; read by id and searched (status, _count) with the child in a header; anyone
else: 404 and an empty search."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.careplan import CarePlan

from hub.runtime import Runtime
from tests.plans.helpers import PIN, plan_consent, post_plan, school_and_social
from tests.teams.test_team_story import SCHOOL, SOCIAL, county

__all__ = ["county"]
SECTION = "https://vocab.hub.se/fhir/StructureDefinition/child-plan-section"


def sections(resource: CarePlan, url: str) -> dict[str, Any]:
    found = {}
    for ext in resource.extension or []:
        if ext.url.endswith(url):
            parts = {e.url: e for e in ext.extension}
            found[parts["code"].valueCode] = parts
    return found


async def test_members_read_and_search_care_plans_with_only_their_sections(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    await school_and_social(client, auth)
    await plan_consent(client, auth, SOCIAL, ["child-plan", "school-situation"], by=SCHOOL)
    first = (await post_plan(client, auth, SCHOOL)).json()
    second = (await post_plan(client, auth, SCHOOL, if_match=first["etag"])).json()

    r = await client.get(f"/fhir/r4/CarePlan/{second['id']}", headers=auth(SOCIAL))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json"), r.text
    plan = CarePlan.model_validate(r.json())
    assert (plan.status, plan.intent, plan.author.identifier.value) == ("active", "plan", SCHOOL)
    assert plan.careTeam[0].reference.startswith("CareTeam/") and "2383" not in r.text
    seen = sections(plan, "child-plan-section")
    assert "school_situation" in seen and "interventions" in seen and "health" not in seen
    assert json.loads(seen["school_situation"]["content"].valueString)["summary"].startswith("Närvaro")
    withheld = sections(plan, "child-plan-section-withheld")
    assert withheld["health"]["dataCategory"].valueCoding.code == "health"
    assert withheld["needs"]["reason"].valueCode == "not-covered-by-legal-basis"
    # The author sees every section.
    mine = CarePlan.model_validate((await client.get(f"/fhir/r4/CarePlan/{first['id']}", headers=auth(SCHOOL))).json())
    assert mine.status == "revoked" and "health" in sections(mine, "child-plan-section")

    r = await client.get("/fhir/r4/CarePlan", headers={**auth(SOCIAL), **PIN})
    bundle = Bundle.model_validate(r.json())
    assert bundle.total == 2 and [e.resource.id for e in bundle.entry] == [second["id"], first["id"]]
    r = await client.get("/fhir/r4/CarePlan?status=active", headers={**auth(SOCIAL), **PIN})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [second["id"]]
    r = await client.get("/fhir/r4/CarePlan?_count=1", headers={**auth(SOCIAL), **PIN})
    assert (r.json()["total"], len(r.json()["entry"])) == (2, 1)

    for org, roles in (("nora-vardcentral", ("system",)), ("region-samordning", ("coordinator",))):
        assert (await client.get(f"/fhir/r4/CarePlan/{first['id']}", headers=auth(org, *roles))).status_code == 404
        r = await client.get("/fhir/r4/CarePlan", headers={**auth(org, *roles), **PIN})
        assert r.status_code == 200 and r.json()["total"] == 0 and r.json()["entry"] == []
    assert (await client.get("/fhir/r4/CarePlan/not-a-uuid", headers=auth(SOCIAL))).status_code == 404
    [declared] = [
        res
        for res in (await client.get("/fhir/r4/metadata")).json()["rest"][0]["resource"]
        if res["type"] == "CarePlan"
    ]
    assert {p["name"] for p in declared["searchParam"]} == {"status", "_count"}


PLAN_QUERY = """{ childPlan { __typename ... on ChildPlan { version current sections plan
  withheld { section dataCategory reason } author { organisationId } } ... on NotFoundProblem { detail } } }"""


async def test_graphql_child_plan_shows_a_member_its_sections_and_everyone_else_not_found(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    await school_and_social(client, auth)
    assert (await post_plan(client, auth, SCHOOL)).status_code == 201
    r = await client.post("/graphql", json={"query": PLAN_QUERY}, headers={**auth(SOCIAL), **PIN})
    seen = r.json()["data"]["childPlan"]
    assert (seen["__typename"], seen["version"], seen["sections"]) == ("ChildPlan", 1, [])
    assert {"section": "health", "dataCategory": "health", "reason": "not-covered-by-legal-basis"} in seen["withheld"]
    r = await client.post("/graphql", json={"query": PLAN_QUERY}, headers={**auth(SCHOOL), **PIN})
    assert "health" in r.json()["data"]["childPlan"]["plan"]
    for org, roles in (("nora-vardcentral", ("system",)), ("region-samordning", ("coordinator",))):
        r = await client.post("/graphql", json={"query": PLAN_QUERY}, headers={**auth(org, *roles), **PIN})
        assert r.json()["data"]["childPlan"]["__typename"] == "NotFoundProblem"
