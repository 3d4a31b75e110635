"""The team around the child through HTTP, with the organisations' systems as real webhook receivers on
loopback: a school is named person and hands over to the next school by an offer its system receives; BUP
accepts a referral and joins; social services becomes lead professional; the lead role ends and the team
shows the named person responsible again."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hub.adapters.webhook import verify_signature
from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.loopback import Recorded, Recorder, Reply, serve
from tests.referrals.helpers import CHILD, RECEIVER, SENDER, event, record_consent, sent, set_endpoint, worker_for

SECRET = "dev-secret-demo-webhook"  # what dev mode resolves secret_ref "demo-webhook" to
SCHOOL, NEXT_SCHOOL = "nora-grundskola", "nora-gymnasieskola"
SOCIAL = "nora-socialtjanst-myndighet"
PIN = {"Child-Personal-Identity-Number": CHILD}


class System(Recorder):
    """An organisation's system: checks the hub's signature, keeps each message once per idempotency key."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.stored: dict[str, Any] = {}

    def _answer(self, req: Recorded) -> Reply:
        verify_signature(SECRET, req.headers.get("hub-signature"), req.body, now=time.time())
        self.stored.setdefault(req.headers["idempotency-key"], req.json())
        return Reply(200, {"id": f"msg-{len(self.stored)}"})

    def offers(self) -> list[dict[str, Any]]:
        return [m["team_offer"] for m in self.stored.values() if "team_offer" in m]


@pytest.fixture
async def county(client: httpx.AsyncClient, auth, runtime: Runtime) -> Runtime:  # type: ignore[no-untyped-def]
    async with runtime.sessions() as session:
        await load_demo(session)
    await set_endpoint(runtime, SENDER, "mailbox", {})
    await record_consent(client, auth)
    return runtime


async def team(client: httpx.AsyncClient, auth: Any, org: str, *roles: str) -> httpx.Response:
    return await client.get("/v1/children/team", headers={**auth(org, *roles), **PIN})


async def name_school(client: httpx.AsyncClient, auth: Any, org: str = SCHOOL, **over: Any) -> httpx.Response:
    body = {"child": {"personal_identity_number": CHILD}, "stage": "school", "professional_ref": "rektor-1", **over}
    return await client.post("/v1/children/team/named-person", json=body, headers=auth(org))


async def offer(client: httpx.AsyncClient, auth: Any, to: str = NEXT_SCHOOL, by: str = SCHOOL) -> httpx.Response:
    body = {"child": {"personal_identity_number": CHILD}, "to_organisation": to, "stage": "upper-secondary"}
    return await client.post("/v1/children/team/offers", json=body, headers=auth(by))


def child(**over: Any) -> dict[str, Any]:
    return {"child": {"personal_identity_number": CHILD}, **over}


async def test_the_named_person_hands_over_bup_joins_and_the_lead_role_returns_to_the_named_person(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    school, next_school, bup = System(), System(), System()
    with serve(school) as s1, serve(next_school) as s2, serve(bup) as s3:
        for org, url in ((SCHOOL, s1), (NEXT_SCHOOL, s2), (RECEIVER, s3)):
            await set_endpoint(county, org, "webhook", {"url": url + "/hub", "secret_ref": "demo-webhook"})
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http)

            # The school is the named person; it sees the team, which says it is responsible.
            r = await name_school(client, auth)
            assert r.status_code == 201, r.text
            assert r.json()["responsible"]["organisation"]["organisation_id"] == SCHOOL
            assert r.json()["named_person"]["stage"] == "school"

            # On the transition it offers the role to the next school, whose system receives the offer.
            r = await offer(client, auth)
            assert r.status_code == 201, r.text
            offer_id = r.json()["id"]
            await worker.run_until_idle()
            [offered] = next_school.offers()
            assert (offered["id"], offered["state"], offered["stage"]) == (offer_id, "open", "upper-secondary")
            assert offered["from"]["organisation_id"] == SCHOOL
            assert offered["child"]["personal_identity_number"] == "201503112383"
            assert offered["accept"].endswith(f"/v1/children/team/offers/{offer_id}/accept")
            # Until it accepts, the school stays responsible and the next school is not on the team.
            assert (await team(client, auth, SCHOOL)).json()["named_person"]["organisation"][
                "organisation_id"
            ] == SCHOOL
            assert (await team(client, auth, NEXT_SCHOOL)).status_code == 404
            assert (
                await client.get(f"/v1/children/team/offers/{offer_id}", headers=auth(NEXT_SCHOOL))
            ).status_code == 200

            r = await client.post(f"/v1/children/team/offers/{offer_id}/accept", headers=auth(NEXT_SCHOOL))
            assert r.status_code == 200 and r.json()["state"] == "accepted", r.text
            await worker.run_until_idle()
            [answered] = school.offers()  # the offering school's system hears the answer
            assert (answered["id"], answered["state"]) == (offer_id, "accepted") and "child" not in answered

            seen = (await team(client, auth, NEXT_SCHOOL)).json()
            assert seen["named_person"]["organisation"]["organisation_id"] == NEXT_SCHOOL
            [before, after] = seen["assignments"]
            assert (before["organisation"]["organisation_id"], before["end_reason"]) == (SCHOOL, "handed-over")
            assert before["period_end"] == after["period_start"]  # no gap, no overlap
            assert (await team(client, auth, SCHOOL)).status_code == 404  # off the team now

            # BUP accepts a referral about the child and joins the team.
            rid = await sent(client, auth)
            await worker.run_until_idle()
            r = await event(client, auth, RECEIVER, rid, type="status", status="accepted")
            assert r.status_code == 201, r.text
            seen = (await team(client, auth, RECEIVER)).json()
            [joined] = seen["memberships"]
            assert (joined["organisation"]["organisation_id"], joined["join_reason"]) == (RECEIVER, "referral-accepted")
            assert {"organisation": joined["organisation"], "roles": ["participant"]} in seen["members"]
            assert "referral" not in str(seen["members"])  # organisations and roles, no case content

            # Social services is added and becomes lead professional: responsible now.
            r = await client.post(
                "/v1/children/team/participants",
                json=child(organisation_id=SOCIAL, reason="sip"),
                headers=auth(NEXT_SCHOOL),
            )
            assert r.status_code == 201, r.text
            r = await client.post(
                "/v1/children/team/lead-professional", json=child(organisation_id=SOCIAL), headers=auth(NEXT_SCHOOL)
            )
            assert r.status_code == 201, r.text
            assert r.json()["responsible"] == {
                "organisation": {
                    "organisation_id": SOCIAL,
                    "name": r.json()["responsible"]["organisation"]["name"],
                    "type": "socialtjanst-myndighet",
                },
                "role": "lead-professional",
                "returned": False,
                "note_sv": None,
                "note_en": None,
            }

            # The lead role ends: the named person is responsible again, and the team says so.
            r = await client.post(
                "/v1/children/team/lead-professional/end", json=child(reason="resolved"), headers=auth(SOCIAL)
            )
            assert r.status_code == 200, r.text
            responsible = (await team(client, auth, RECEIVER)).json()["responsible"]
            assert responsible["organisation"]["organisation_id"] == NEXT_SCHOOL
            assert (responsible["role"], responsible["returned"]) == ("named-person", True)
            assert "named person" in responsible["note_en"]

            # BUP's referral completes: its membership ends with that reason, and it is off the team.
            assert (await event(client, auth, RECEIVER, rid, type="status", status="in-progress")).status_code == 201
            r = await event(client, auth, RECEIVER, rid, type="status", status="completed", feedback="Klart.")
            assert r.status_code == 201, r.text
            [left] = (await team(client, auth, NEXT_SCHOOL)).json()["memberships"][:1]
            assert (left["organisation"]["organisation_id"], left["leave_reason"]) == (RECEIVER, "referral-completed")
            assert left["period_end"] is not None
            assert (await team(client, auth, RECEIVER)).status_code == 404

    # Everyone else: 404, a coordinator too; every read by a member is audited with its basis.
    for org, roles in (("nora-vardcentral", ("system",)), ("region-samordning", ("coordinator",))):
        r = await team(client, auth, org, *roles)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
    async with county.engine.connect() as conn:
        reads = (
            await conn.execute(
                text("select actor_organisation, legal_basis from audit_event where action = 'team-read'")
            )
        ).all()
    assert {(SCHOOL, "team-membership"), (NEXT_SCHOOL, "team-membership"), (RECEIVER, "team-membership")} <= set(reads)


async def test_a_mailbox_organisation_fetches_the_offer_and_hears_it_withdrawn(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    await set_endpoint(county, NEXT_SCHOOL, "mailbox", {})
    await name_school(client, auth)
    offer_id = (await offer(client, auth)).json()["id"]
    async with httpx.AsyncClient() as http:
        worker = worker_for(county, http)
        await worker.run_until_idle()
        r = await client.post(f"/v1/children/team/offers/{offer_id}/withdraw", headers=auth(SCHOOL))
        assert r.status_code == 200, r.text
        await worker.run_until_idle()
    r = await client.get("/v1/mailbox", headers=auth(NEXT_SCHOOL))
    assert r.status_code == 200, r.text
    messages = r.json()["items"]
    assert [(m["kind"], m["body"]["team_offer"]["state"]) for m in messages] == [
        ("team-offer", "open"),
        ("team-offer", "withdrawn"),
    ]
    assert "accept" in messages[0]["body"]["team_offer"] and "accept" not in messages[1]["body"]["team_offer"]
    for m in messages:
        assert (await client.post(f"/v1/mailbox/{m['id']}/ack", headers=auth(NEXT_SCHOOL))).status_code == 204
    async with county.engine.connect() as conn:
        fetched = await conn.scalar(
            text(
                "select count(*) from audit_event where action = 'team-read' and actor_organisation = :o "
                "and legal_basis = 'team-offer-party'"
            ),
            {"o": NEXT_SCHOOL},
        )
    assert fetched == 2  # each fetch of an offer's message is audited as a read by a party to the offer


async def test_the_tours_demo_receiver_prints_a_team_offer(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    from hub.devtools.demo_receiver import receiver_app

    lines: list[str] = []
    with serve(receiver_app(SECRET, echo=lines.append)) as url:
        await set_endpoint(county, NEXT_SCHOOL, "webhook", {"url": url + "/gymnasiet", "secret_ref": "demo-webhook"})
        await name_school(client, auth)
        offer_id = (await offer(client, auth)).json()["id"]
        async with httpx.AsyncClient() as http:
            await worker_for(county, http).run_until_idle()
    [line] = lines
    assert offer_id in line and "is open" in line and f"/offers/{offer_id}/accept" in line
    assert CHILD not in line and "201503112383" not in line  # the tour's terminal shows no identity
