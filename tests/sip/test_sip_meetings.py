"""SIP meetings through HTTP, with the organisations' systems as real webhook receivers on loopback:
social services invites a school, BUP and a health centre in one request; the guardians' consent covers
the school and BUP, so their systems get the invitation; the health centre has no basis, gets nothing, and
the answer says why. The answers travel back to social services' system; cancelling tells the invited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.loopback import serve
from tests.referrals.helpers import CHILD, consent_body, send, set_endpoint, worker_for
from tests.teams.test_team_story import SECRET, System  # an organisation's system on loopback, signature checked

SOCIAL, SCHOOL, BUP, HEALTH = "nora-socialtjanst-myndighet", "nora-grundskola", "region-bup", "nora-vardcentral"
SOON = datetime.now(UTC) + timedelta(days=10)


def news(system: System, key: str) -> list[dict[str, Any]]:
    """The messages of one kind the system kept (``sip_invitation`` or ``sip_answer``), in arrival order."""
    return [m[key] for m in system.stored.values() if key in m]


async def sip_consent(client: httpx.AsyncClient, auth: Any) -> str:
    """The guardians' consent to SIP invitations from social services to schools and BUP (not to health
    centres)."""
    body = consent_body(
        data_categories=["identity", "child-plan"],
        from_parties={"organisation_ids": [SOCIAL]},
        to_parties={"organisation_types": ["grundskola", "bup"]},
        purposes=["sip-kallelse"],
        evidence_reference="soc-akt:2026/77",
    )
    r = await client.post("/v1/consents", json=body, headers=auth(SOCIAL, "system"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture
async def county(client: httpx.AsyncClient, auth: Any, runtime: Runtime) -> Runtime:
    """The demo county, with :func:`sip_consent`."""
    async with runtime.sessions() as session:
        await load_demo(session)
    await sip_consent(client, auth)
    return runtime


def meeting_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "child": {"personal_identity_number": CHILD},
        "invitees": [SCHOOL, BUP, HEALTH],
        "times": [SOON.isoformat(), (SOON + timedelta(days=1)).isoformat()],
        "duration_minutes": 90,
        "format": "in-person",
        "language": "sv",
        "purpose": "Samordna stödet kring skolfrånvaron.",
        "place": "Familjecentralen, rum 2",
    }
    body.update(over)
    return body


async def invite(client: httpx.AsyncClient, auth: Any, *, key: str | None = None, **over: Any) -> httpx.Response:
    headers = {**auth(SOCIAL, "system"), "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post("/v1/sip-meetings", json=meeting_body(**over), headers=headers)


async def answer(client: httpx.AsyncClient, auth: Any, org: str, meeting: str, **body: Any) -> httpx.Response:
    return await client.post(f"/v1/sip-meetings/{meeting}/answers", json=body, headers=auth(org, "system"))


def by_org(meeting: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["organisation"]["organisation_id"]: i for i in meeting["invitations"]}


async def test_one_request_invites_three_each_decided_and_the_answers_come_back(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    social, school, bup, health = System(), System(), System(), System()
    with serve(social) as s0, serve(school) as s1, serve(bup) as s2, serve(health) as s3:
        for org, url in ((SOCIAL, s0), (SCHOOL, s1), (BUP, s2), (HEALTH, s3)):
            await set_endpoint(county, org, "webhook", {"url": url + "/hub", "secret_ref": "demo-webhook"})
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http)

            r = await invite(client, auth)
            assert r.status_code == 201, r.text
            made = r.json()
            invitations = by_org(made)
            assert {o: i["outcome"] for o, i in invitations.items()} == {
                SCHOOL: "invited",
                BUP: "invited",
                HEALTH: "withheld",
            }
            assert invitations[SCHOOL]["decision"]["legal_basis"] == "consent"
            withheld = invitations[HEALTH]["decision"]
            assert withheld["legal_basis"] is None and withheld["reasons"] and withheld["remedies"]
            assert any("consent" in (r["code"] + r["en"]).lower() for r in withheld["remedies"])

            await worker.run_until_idle()
            assert health.stored == {}  # no basis: its system gets nothing
            for system in (school, bup):
                [invited] = news(system, "sip_invitation")
                assert (invited["meeting_id"], invited["state"]) == (made["id"], "open")
                assert invited["child"]["personal_identity_number"] == "201503112383"
                assert invited["answer"].endswith(f"/v1/sip-meetings/{made['id']}/answers")
                assert {o["organisation_id"] for o in invited["invited"]} == {SCHOOL, BUP}  # never the withheld
                assert invited["purpose"] == "Samordna stödet kring skolfrånvaron."

            r = await answer(client, auth, SCHOOL, made["id"], answer="accepted")
            assert r.status_code == 200, r.text
            later = (SOON + timedelta(days=3)).isoformat()
            r = await answer(client, auth, BUP, made["id"], answer="proposed-time", proposed_time=later)
            assert r.status_code == 200, r.text
            await worker.run_until_idle()
            answers = {a["from"]["organisation_id"]: a for a in news(social, "sip_answer")}
            assert answers[SCHOOL]["answer"] == "accepted"
            assert answers[BUP]["answer"] == "proposed-time"
            assert datetime.fromisoformat(answers[BUP]["proposed_time"]) == datetime.fromisoformat(later)

            # The inviter sees every answer; an invitee the invited organisations and their answers only.
            seen = (await client.get(f"/v1/sip-meetings/{made['id']}", headers=auth(SOCIAL))).json()
            assert {o: i["answer"] for o, i in by_org(seen).items()} == {
                SCHOOL: "accepted",
                BUP: "proposed-time",
                HEALTH: None,
            }
            r = await client.get(f"/v1/sip-meetings/{made['id']}", headers=auth(SCHOOL))
            assert r.status_code == 200, r.text
            assert set(by_org(r.json())) == {SCHOOL, BUP}
            assert all(i["outcome"] is None and i["decision"] is None for i in r.json()["invitations"])
            assert HEALTH not in r.text

            # Cancelling tells the invited organisations; an answer after that is a 409 with the state.
            r = await client.post(
                f"/v1/sip-meetings/{made['id']}/cancel", json={"reason": "Ny tid"}, headers=auth(SOCIAL)
            )
            assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
            await worker.run_until_idle()
            for system in (school, bup):
                assert [i["state"] for i in news(system, "sip_invitation")] == ["open", "cancelled"]
            assert health.stored == {}
            r = await answer(client, auth, SCHOOL, made["id"], answer="declined")
            assert r.status_code == 409, r.text
            assert r.json()["current"]["meeting"]["state"] == "cancelled"
            assert r.json()["current"]["invitation"]["answer"] == "accepted"  # its own answer, as it stands

    async with county.engine.connect() as conn:
        decisions = (
            await conn.execute(
                text(
                    "select to_organisation, allowed, requested_by = 'hub:delivery' from sharing_decision "
                    "where purpose = 'sip-kallelse'"
                )
            )
        ).all()
        sent = (
            await conn.execute(
                text(
                    "select counterpart_organisation, legal_basis from audit_event where action = 'sip-invitation-sent'"
                )
            )
        ).all()
    # Each invitee decided on its own, and each invitation sent decided again at send time (as a referral).
    assert sorted(decisions) == sorted(
        [(HEALTH, False, False), (BUP, True, False), (SCHOOL, True, False), (BUP, True, True), (SCHOOL, True, True)]
    )
    assert sorted(sent) == sorted([(BUP, "consent"), (SCHOOL, "consent")])


async def test_a_consent_withdrawn_before_delivery_withholds_the_invitation_after_all(
    client: httpx.AsyncClient, auth: Any, runtime: Runtime
) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)
    consent = await sip_consent(client, auth)
    school = System()
    with serve(school) as url:
        await set_endpoint(runtime, SCHOOL, "webhook", {"url": url + "/hub", "secret_ref": "demo-webhook"})
        made = (await invite(client, auth, invitees=[SCHOOL])).json()
        assert by_org(made)[SCHOOL]["outcome"] == "invited"
        body = {"withdrawn_by": "vh1", "reason": "Vårdnadshavaren ångrade sig."}
        r = await client.post(f"/v1/consents/{consent}/withdraw", json=body, headers=auth(SOCIAL, "system"))
        assert r.status_code == 200, r.text
        async with httpx.AsyncClient() as http:
            await worker_for(runtime, http).run_until_idle()
    assert school.stored == {}  # decided again at send time, as a referral is: nothing went
    seen = (await client.get(f"/v1/sip-meetings/{made['id']}", headers=auth(SOCIAL))).json()
    withheld = by_org(seen)[SCHOOL]
    assert (
        withheld["outcome"] == "withheld"
        and withheld["decision"]["decision_id"] != by_org(made)[SCHOOL]["decision"]["decision_id"]
    )
    assert "consent-withdrawn" in [r["code"] for r in withheld["decision"]["reasons"]]
    assert (await client.get(f"/v1/sip-meetings/{made['id']}", headers=auth(SCHOOL))).status_code == 404
    async with runtime.engine.connect() as conn:
        state = await conn.scalar(text("select state from outbox where kind = 'sip-invitation'"))
    assert state == "abandoned"


async def test_a_child_with_protected_identity_is_invited_only_where_the_policy_releases_it(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    marked = await send(client, auth, child={"personal_identity_number": CHILD, "protected_identity": True})
    assert marked.status_code in (202, 403), marked.text  # refused or not, the message marks the child (sticky)
    made = (await invite(client, auth, invitees=[SCHOOL, BUP])).json()
    for org in (SCHOOL, BUP):
        invitation = by_org(made)[org]
        assert invitation["outcome"] == "withheld", invitation
        assert "identity-protected" in [r["code"] for r in invitation["decision"]["reasons"]]
        assert "recipient-reaches-sender" in [r["code"] for r in invitation["decision"]["remedies"]]


async def test_everyone_else_learns_nothing(client: httpx.AsyncClient, auth: Any, county: Runtime) -> None:
    made = (await invite(client, auth)).json()
    unknown = str(uuid.uuid4())
    answers = []
    for org, roles, meeting in (
        (HEALTH, ("system",), made["id"]),  # withheld: as if there were no meeting
        ("nora-forskola", ("system",), made["id"]),
        ("region-samordning", ("coordinator",), made["id"]),
        (SCHOOL, ("system",), unknown),
        (SCHOOL, ("system",), "not-a-uuid"),
    ):
        r = await client.get(f"/v1/sip-meetings/{meeting}", headers=auth(org, *roles))
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
        answers.append((r.json()["type"], r.json()["detail"]))
    assert len(set(answers)) == 1  # "not yours" and "does not exist" alike
    for org in (HEALTH, "nora-forskola"):
        r = await answer(client, auth, org, made["id"], answer="accepted")
        assert r.status_code == 404, r.text
        r = await client.post(f"/v1/sip-meetings/{made['id']}/cancel", headers=auth(org))
        assert r.status_code == 404, r.text
    assert (await client.get(f"/v1/sip-meetings/{made['id']}")).status_code == 401
    r = await client.post(f"/v1/sip-meetings/{made['id']}/cancel", headers=auth(SCHOOL))
    assert r.status_code == 403, r.text  # an invitee does not cancel


@pytest.mark.parametrize(
    ("over", "pointer"),
    [
        ({"child": {"personal_identity_number": "20150311-2384"}}, "/child/personal_identity_number"),
        ({"invitees": [SCHOOL, "no-such-organisation"]}, "/invitees/1"),
        ({"invitees": [SOCIAL, SCHOOL]}, "/invitees/0"),
        ({"invitees": [SCHOOL, BUP, SCHOOL]}, "/invitees/2"),
        ({"invitees": []}, "/invitees"),
        ({"invitees": [f"org-{n}" for n in range(21)]}, "/invitees"),
        ({"times": [(datetime.now(UTC) - timedelta(hours=1)).isoformat()]}, "/times/0"),
        ({"times": []}, "/times"),
        ({"format": "carrier-pigeon"}, "/format"),
    ],
)
async def test_bad_input_is_422_at_the_field(
    client: httpx.AsyncClient, auth: Any, county: Runtime, over: dict[str, Any], pointer: str
) -> None:
    r = await invite(client, auth, **over)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert pointer in [e["pointer"] for e in r.json()["errors"]], r.text
    async with county.engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from sip_meeting")) == 0
        assert await conn.scalar(text("select count(*) from outbox")) == 0


async def test_a_retry_with_the_same_key_is_the_same_meeting(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    first = await invite(client, auth, key="sip-1")
    again = await invite(client, auth, key="sip-1")
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert by_org(again.json())[HEALTH]["decision"]["reasons"] == by_org(first.json())[HEALTH]["decision"]["reasons"]
    other = await invite(client, auth, key="sip-1", purpose="Något annat.")
    assert other.status_code == 409, other.text
    async with county.engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from sip_meeting")) == 1
        assert await conn.scalar(text("select count(*) from outbox where kind = 'sip-invitation'")) == 2
        assert await conn.scalar(text("select count(*) from sharing_decision where purpose = 'sip-kallelse'")) == 3


async def test_the_latest_answer_stands_and_a_repeated_answer_sends_nothing(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    meeting = (await invite(client, auth)).json()["id"]
    r = await answer(client, auth, SCHOOL, meeting, answer="proposed-time")
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/proposed_time", r.text
    assert (await answer(client, auth, SCHOOL, meeting, answer="accepted")).status_code == 200
    assert (await answer(client, auth, SCHOOL, meeting, answer="accepted")).status_code == 200
    r = await answer(client, auth, SCHOOL, meeting, answer="declined", reason="Krockar med nationella prov")
    assert r.status_code == 200, r.text
    mine = by_org(r.json())[SCHOOL]
    assert (mine["answer"], mine["reason"]) == ("declined", "Krockar med nationella prov")
    assert (await answer(client, auth, SOCIAL, meeting, answer="accepted")).status_code == 403
    async with county.engine.connect() as conn:
        sent = (
            await conn.execute(text("select kind, recipient_organisation from outbox where kind = 'sip-answer'"))
        ).all()
    assert sent == [("sip-answer", SOCIAL), ("sip-answer", SOCIAL)]  # accepted, then declined; not the repeat


async def test_a_mailbox_invitee_fetches_its_invitation_audited(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    for org in (BUP, SCHOOL):
        await set_endpoint(county, org, "mailbox", {})
    meeting = (await invite(client, auth)).json()["id"]
    async with httpx.AsyncClient() as http:
        await worker_for(county, http).run_until_idle()
    r = await client.get("/v1/mailbox", headers=auth(BUP))
    assert r.status_code == 200, r.text
    [message] = r.json()["items"]
    assert (message["kind"], message["body"]["sip_invitation"]["meeting_id"]) == ("sip-invitation", meeting)
    assert (await client.get("/v1/mailbox", headers=auth(HEALTH))).json()["items"] == []
    async with county.engine.connect() as conn:
        basis = await conn.scalar(
            text("select legal_basis from audit_event where action = 'sip-meeting-read' and actor_organisation = :o"),
            {"o": BUP},
        )
    assert basis == "sip-invitee"


async def test_the_tours_demo_receiver_prints_sip_news_without_identity(
    client: httpx.AsyncClient, auth: Any, county: Runtime
) -> None:
    from hub.devtools.demo_receiver import receiver_app

    lines: list[str] = []
    with serve(receiver_app(SECRET, echo=lines.append)) as url:
        for org in (SOCIAL, SCHOOL):
            await set_endpoint(county, org, "webhook", {"url": f"{url}/{org}", "secret_ref": "demo-webhook"})
        await set_endpoint(county, BUP, "mailbox", {})
        meeting = (await invite(client, auth)).json()["id"]
        assert (await answer(client, auth, SCHOOL, meeting, answer="accepted")).status_code == 200
        async with httpx.AsyncClient() as http:
            await worker_for(county, http).run_until_idle()
    assert any(meeting in line and "is open" in line and "/answers" in line for line in lines), lines
    assert any(meeting in line and f"{SCHOOL} accepted" in line for line in lines), lines
    assert not any(CHILD in line or "201503112383" in line for line in lines)
