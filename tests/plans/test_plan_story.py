"""The child's plan through HTTP, with the organisations' systems as real webhook receivers on loopback:
a school is named person; BUP accepts a referral and joins the team; social services becomes lead
professional and sends a plan; the school receives the sections its consent covers and not the health
section; an organisation without any basis gets a notice, not content; BUP posts a review that social
services' system receives; the lead role ends and the team shows the named person responsible again."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from hub.runtime import Runtime
from tests.loopback import serve
from tests.plans.helpers import (
    PIN,
    VARDCENTRAL,
    build_team,
    plan_consent,
    post_plan,
    review_answers,
)
from tests.referrals.helpers import CHILD, RECEIVER, set_endpoint, worker_for
from tests.teams.test_team_story import SCHOOL, SOCIAL, System, child, county, team

__all__ = ["county"]  # the team story's fixture: the demo county with a consent for the referral

SCHOOL_CATEGORIES = ["child-plan", "school-situation", "wellbeing-assessment", "concern-text"]
ALL_CATEGORIES = [*SCHOOL_CATEGORIES, "health", "social-services"]


def plans(system: System, key: str) -> list[dict[str, Any]]:
    return [m[key] for m in system.stored.values() if key in m]


async def test_social_services_sends_a_plan_each_member_gets_what_its_basis_covers_and_bup_reviews_it(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    school, bup, social, vardcentral = System(), System(), System(), System()
    with serve(school) as s1, serve(bup) as s2, serve(social) as s3, serve(vardcentral) as s4:
        for org, url in ((SCHOOL, s1), (RECEIVER, s2), (SOCIAL, s3), (VARDCENTRAL, s4)):
            await set_endpoint(county, org, "webhook", {"url": url + "/hub", "secret_ref": "demo-webhook"})
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http)
            await build_team(client, auth, worker, extra=(VARDCENTRAL,))
            await plan_consent(client, auth, SCHOOL, SCHOOL_CATEGORIES)
            await plan_consent(client, auth, RECEIVER, ALL_CATEGORIES)

            # Only the responsible organisation writes the plan: the named person is a member (403), an
            # organisation off the team is told nothing (404).
            assert (await post_plan(client, auth, SCHOOL)).status_code == 403
            r = await post_plan(client, auth, "nora-gymnasieskola")
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"

            r = await post_plan(client, auth)
            assert r.status_code == 201, r.text
            first = r.json()
            assert first["version"] == 1 and r.headers["ETag"] == first["etag"]
            shares = {s["organisation_id"]: s for s in first["shares"]}
            assert set(shares) == {SCHOOL, RECEIVER, VARDCENTRAL}  # every member but the author
            assert (shares[VARDCENTRAL]["kind"], shares[VARDCENTRAL]["sections"]) == ("plan-notice", [])
            await worker.run_until_idle()

            # The school's system gets the sections its consent covers: not health, not the risk assessment.
            [received] = plans(school, "plan_version")
            assert received["version"] == 1 and received["legal_basis"] == "consent"
            assert received["child"]["personal_identity_number"] == "201503112383"
            assert {"school_situation", "needs", "reasons", "child_views"} <= set(received["plan"])
            assert "health" not in received["plan"] and "risk_assessment" not in received["plan"]
            withheld = {w["section"]: w for w in received["withheld"]}
            assert withheld["health"] == {
                "section": "health",
                "data_category": "health",
                "reason": "not-covered-by-legal-basis",
            }
            assert withheld["risk_assessment"]["data_category"] == "social-services"
            # BUP's consent covers health: it gets the whole plan.
            [at_bup] = plans(bup, "plan_version")
            assert at_bup["plan"]["health"]["summary"].startswith("Sömnproblem") and at_bup["withheld"] == []
            # The health centre has no basis: a notice that a plan exists and whom to ask, and what would
            # make a share lawful; no content.
            [notice] = plans(vardcentral, "plan_notice")
            assert notice["ask"]["organisation_id"] == SOCIAL and notice["version"] == 1
            assert "plan" not in notice and "consent-covering-recipient" in {r["code"] for r in notice["remedies"]}
            assert plans(vardcentral, "plan_version") == []

            # The school reads the plan: the same sections, the withheld ones listed with their reason.
            r = await client.get("/v1/children/plan", headers={**auth(SCHOOL), **PIN})
            assert r.status_code == 200, r.text
            assert "health" not in r.json()["plan"] and "school_situation" in r.json()["plan"]
            assert {"section": "health", "data_category": "health", "reason": "not-covered-by-legal-basis"} in r.json()[
                "withheld"
            ]
            assert (
                await client.get("/v1/children/plan", headers={**auth("nora-gymnasieskola"), **PIN})
            ).status_code == 404

            # A new version needs the current one's ETag: missing 428, stale 412 with the current ETag.
            r = await post_plan(client, auth)
            assert r.status_code == 428 and r.headers["content-type"] == "application/problem+json", r.text
            r = await post_plan(client, auth, if_match='"not-the-current"')
            assert r.status_code == 412, r.text
            assert r.json()["current"]["etag"] == first["etag"] == r.headers["ETag"]
            r = await post_plan(client, auth, if_match=first["etag"])
            assert r.status_code == 201 and r.json()["version"] == 2, r.text
            r = await post_plan(client, auth, if_match=first["etag"])
            assert r.status_code == 412, "the first version is no longer current"

            # BUP reviews version 2 against the five questions; social services' system receives it.
            body = child(answers=review_answers())
            r = await client.post("/v1/children/plan/versions/2/reviews", json=body, headers=auth(RECEIVER))
            assert r.status_code == 201 and r.json()["notified_organisation"] == SOCIAL, r.text
            await worker.run_until_idle()
            [review] = plans(social, "plan_review")
            assert (review["version"], review["reviewer"]["organisation_id"]) == (2, RECEIVER)
            assert review["answers"]["purpose_met"] == "partly"

            # The lead role ends: the named person is responsible again, and the team says so.
            r = await client.post(
                "/v1/children/team/lead-professional/end", json=child(reason="resolved"), headers=auth(SOCIAL)
            )
            assert r.status_code == 200, r.text
            responsible = (await team(client, auth, RECEIVER)).json()["responsible"]
            assert responsible["organisation"]["organisation_id"] == SCHOOL
            assert (responsible["role"], responsible["returned"]) == ("named-person", True)

    # Each member's share was decided and audited on its own, with its basis.
    async with county.engine.connect() as conn:
        decisions = (
            await conn.execute(
                text(
                    "select to_organisation, allowed from sharing_decision where purpose = 'samverkansforfragan' "
                    "and from_organisation = :o order by created_at"
                ),
                {"o": SOCIAL},
            )
        ).all()
        audited = (
            await conn.execute(
                text(
                    "select counterpart_organisation, legal_basis from audit_event "
                    "where action = 'sharing-decision' and actor_organisation = :o"
                ),
                {"o": SOCIAL},
            )
        ).all()
        reads = (
            await conn.execute(
                text("select actor_organisation, legal_basis from audit_event where action = 'plan-read'")
            )
        ).all()
    assert sorted(decisions) == sorted([(SCHOOL, True), (RECEIVER, True), (VARDCENTRAL, False)] * 2)
    assert {(SCHOOL, "consent"), (RECEIVER, "consent"), (VARDCENTRAL, None)} <= set(audited)
    assert (SCHOOL, "consent") in reads
    assert CHILD.replace("-", "") not in str(decisions) + str(audited)
