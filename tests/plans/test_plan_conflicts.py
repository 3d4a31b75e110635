"""Bad input and conflicts for the child's plan, its retention, its mailbox delivery and its one commit."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from sqlalchemy import text

from hub.runtime import Runtime
from hub.services.delivery.polling import purge
from tests.api.test_rate_limits import assert_limited, tuned_client
from tests.plans.helpers import PIN, plan_consent, plan_document, post_plan, review_answers, school_and_social
from tests.referrals.helpers import CHILD, mailbox, sent, set_endpoint, worker_for
from tests.teams.test_team_story import SCHOOL, SOCIAL, child, county, name_school
from tests.test_one_commit import Tally, tally

__all__ = ["county", "tally"]


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return dict(r.json())


async def test_a_plan_needs_a_team_a_valid_child_and_every_required_section(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    body = problem(await post_plan(client, auth, SCHOOL), 409)
    assert body["current"]["missing"] == ["team", "named-person"] and "no team" in body["detail"]
    plan = plan_document()
    del plan["risk_assessment"]
    r = await client.post("/v1/children/plan/versions", json=child(plan=plan), headers=auth(SCHOOL))
    assert [e["pointer"] for e in problem(r, 422)["errors"]] == ["/plan/risk_assessment"]
    bad = {"child": {"personal_identity_number": "20150311-2384"}, "plan": plan_document()}
    r = await client.post("/v1/children/plan/versions", json=bad, headers=auth(SCHOOL))
    assert problem(r, 422)["errors"][0]["pointer"] == "/child/personal_identity_number"
    assert "2015" not in r.text


async def test_the_named_person_writes_the_plan_while_there_is_no_lead_and_members_without_a_basis_get_a_notice(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    await school_and_social(client, auth)
    await set_endpoint(county, SOCIAL, "mailbox", {})
    assert (await post_plan(client, auth, SOCIAL)).status_code == 403, "a participant does not write the plan"
    r = await post_plan(client, auth, SCHOOL)
    assert r.status_code == 201, r.text
    assert [(s["organisation_id"], s["kind"]) for s in r.json()["shares"]] == [(SOCIAL, "plan-notice")]
    async with httpx.AsyncClient() as http:
        await worker_for(county, http).run_until_idle()
    [message] = await mailbox(client, auth, SOCIAL)
    assert message["kind"] == "plan-notice" and message["body"]["plan_notice"]["ask"]["organisation_id"] == SCHOOL
    assert "plan" not in message["body"]["plan_notice"]
    # Reading it: no sections, each withheld with its reason; a review's answers are checked against the
    # five evaluation questions; an organisation off the team cannot review.
    seen = (await client.get("/v1/children/plan/versions/1", headers={**auth(SOCIAL), **PIN})).json()
    assert seen["sections"] == [] and {w["reason"] for w in seen["withheld"]} == {"not-covered-by-legal-basis"}
    assert set(seen["plan"]) <= {"schema_version", "plan_id", "language", "created_on", "updated_on"}
    answers = review_answers()
    del answers["what_has_improved"]
    r = await client.post("/v1/children/plan/versions/1/reviews", json=child(answers=answers), headers=auth(SOCIAL))
    assert [e["pointer"] for e in problem(r, 422)["errors"]] == ["/answers/what_has_improved"]
    r = await client.post(
        "/v1/children/plan/versions/1/reviews", json=child(answers=review_answers()), headers=auth("nora-vardcentral")
    )
    problem(r, 404)
    problem(await client.get("/v1/children/plan/versions/2", headers={**auth(SCHOOL), **PIN}), 404)
    async with county.engine.connect() as conn:
        fetched = (
            await conn.execute(
                text(
                    'select legal_basis, canonical like \'%"via":"mailbox"%\' from audit_event '
                    "where action = 'plan-read' and actor_organisation = :o"
                ),
                {"o": SOCIAL},
            )
        ).all()
    assert ("team-membership", True) in fetched


async def test_after_the_retention_period_only_the_plans_metadata_remains(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    assert (await name_school(client, auth)).status_code == 201
    first = (await post_plan(client, auth, SCHOOL)).json()
    second = (await post_plan(client, auth, SCHOOL, if_match=first["etag"])).json()
    async with county.engine.begin() as conn:
        stored = await conn.scalar(text("select content from plan_version where id = :id"), {"id": first["id"]})
        assert "Sömn".encode() not in bytes(stored) and CHILD.encode() not in bytes(stored), "sealed at rest"
        days = county.settings.plan_retention_days + 1
        await conn.execute(
            text("update plan_version set created_at = created_at - make_interval(days => :d) where id = :id"),
            {"d": days, "id": first["id"]},
        )
    assert await purge(county) >= 1
    old = (await client.get("/v1/children/plan/versions/1", headers={**auth(SCHOOL), **PIN})).json()
    assert old["plan"] is None and old["purged_at"] is not None
    assert old["version"] == 1 and second["version"] == 2 and "health" in old["sections"]
    current = (await client.get("/v1/children/plan", headers={**auth(SCHOOL), **PIN})).json()
    assert current["version"] == 2 and current["plan"]["health"]["summary"].startswith("Sömn")


async def test_sending_a_version_commits_once(
    client: httpx.AsyncClient,
    auth: Any,
    county: Runtime,
    tally: Callable[[], AbstractAsyncContextManager[Tally]],
) -> None:
    await school_and_social(client, auth)
    async with tally() as t:
        r = await post_plan(client, auth, SCHOOL)
        assert r.status_code == 201, r.text
    assert (t.uow_commits, t.orm_commits) == (1, 1)
    assert len(t.transactions) == 1, "the version, each member's decision, share, outbox entry and audit entries"


async def test_a_consent_withdrawn_before_delivery_takes_its_sections_with_it(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    """The basis is checked again when the hub delivers, as for a referral: the member gets a notice."""
    await school_and_social(client, auth)
    await set_endpoint(county, SOCIAL, "mailbox", {})
    consent = await plan_consent(client, auth, SOCIAL, ["child-plan", "school-situation"], by=SCHOOL)
    r = await post_plan(client, auth, SCHOOL)
    assert [(s["organisation_id"], s["kind"]) for s in r.json()["shares"]] == [(SOCIAL, "plan-version")]
    body = {"withdrawn_by": "vh2", "reason": "Vårdnadshavaren ångrade sig."}
    r = await client.post(f"/v1/consents/{consent['id']}/withdraw", json=body, headers=auth(SCHOOL, "system"))
    assert r.status_code == 200, r.text
    async with httpx.AsyncClient() as http:
        await worker_for(county, http).run_until_idle()
    [message] = await mailbox(client, auth, SOCIAL)
    notice = message["body"]["plan_notice"]
    assert message["kind"] == "plan-notice" and "plan" not in notice and notice["remedies"]
    assert {w["section"] for w in notice["withheld"]} >= {"school_situation", "interventions", "health"}
    async with county.engine.connect() as conn:
        refused = await conn.scalar(
            text("select count(*) from sharing_decision where requested_by = 'hub:delivery' and not allowed")
        )
    assert refused == 1


async def test_a_child_with_protected_identity_is_sent_as_the_marker_not_the_identity(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    """As for a referral: a member's system gets the marker (whom to ask, through the hub) in place of the
    identity the protection withholds from it; social services, which the policy names, keeps it."""
    await sent(client, auth, child={"personal_identity_number": CHILD, "protected_identity": True})  # marks it
    await school_and_social(client, auth)
    r = await client.post(
        "/v1/children/team/lead-professional", json=child(organisation_id=SOCIAL), headers=auth(SCHOOL)
    )
    assert r.status_code == 201, r.text
    await set_endpoint(county, SCHOOL, "mailbox", {})
    await plan_consent(client, auth, SCHOOL, ["child-plan", "school-situation"])
    assert (await post_plan(client, auth, SOCIAL)).status_code == 201
    async with httpx.AsyncClient() as http:
        await worker_for(county, http).run_until_idle()
    [message] = [m for m in await mailbox(client, auth, SCHOOL) if m["kind"] == "plan-version"]
    body = message["body"]["plan_version"]
    assert body["protected_identity"]["contact"]["organisation"]["organisation_id"] == SOCIAL
    assert "child" not in body and "2383" not in str(message)


async def test_each_member_of_a_plan_version_counts_as_a_share_attempt(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    # A version shows its author what each member gets: sent again and again it would probe the members'
    # consents, so each member's decision is rate limited like any other (per organisation and child).
    await school_and_social(client, auth)
    async for tight in tuned_client(county, sharing_limit_per_child=2):  # its own rate-limit counters
        etag = None
        for _ in range(2):
            r = await post_plan(tight, auth, SCHOOL, if_match=etag)
            assert r.status_code == 201, r.text
            etag = r.json()["etag"]
        assert_limited(await post_plan(tight, auth, SCHOOL, if_match=etag))
    current = (await client.get("/v1/children/plan", headers={**auth(SCHOOL), **PIN})).json()
    assert current["version"] == 2, "the limited version was not written"
