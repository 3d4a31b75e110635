"""Referrals end to end over HTTP on real PostgreSQL: send, decide, deliver (mailbox), the closed loop."""

from __future__ import annotations

from datetime import date

import httpx
import pytest
from sqlalchemy import text

from hub.db import referrals as referrals_db
from hub.db.engine import driver
from hub.devtools.demo import load_demo
from hub.domain.identity import parse_personal_identity_number
from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem
from tests.referrals.helpers import (
    CHILD,
    RECEIVER,
    SENDER,
    ack,
    event,
    mailbox,
    record_consent,
    referral,
    send,
    sent,
    set_endpoint,
    worker_for,
)


@pytest.fixture
async def county(client: httpx.AsyncClient, runtime: Runtime) -> Runtime:
    async with runtime.sessions() as session:
        await load_demo(session)
    for org in (SENDER, RECEIVER, "nora-socialtjanst-myndighet", "nora-grundskola"):
        await set_endpoint(runtime, org, "mailbox", {})
    return runtime


@pytest.fixture
async def worker(county: Runtime):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as http:
        yield worker_for(county, http, delivery_backoff_base_seconds=0.001, delivery_backoff_max_seconds=0.002)


# --- sending -----------------------------------------------------------------------------------------------


async def test_an_allowed_referral_is_accepted_with_its_id(client, auth, county) -> None:
    await record_consent(client, auth)
    r = await send(client, auth)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "requested" and r.headers["location"] == f"/v1/referrals/{body['id']}"

    mine = await referral(client, auth, SENDER, body["id"])
    assert mine["permitted_categories"] == ["concern-text", "identity", "school-situation"]
    assert "healthy" in mine["dimensions"] and "safe" in mine["dimensions"], "trygghet translated to safe"
    assert mine["deliveries"][0]["state"] == "queued"
    assert mine["legal_basis"] == "consent" and mine["events"][0]["to_status"] == "requested"


async def test_the_same_key_and_body_is_the_same_referral_another_body_a_conflict(client, auth, county) -> None:
    await record_consent(client, auth)
    first = await send(client, auth, key="k-1")
    again = await send(client, auth, key="k-1")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    other = await send(client, auth, key="k-1", kind="samverkansforfragan")
    assert_problem(other, 409, "conflict")
    async with county.engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from referral")) == 1
        assert await conn.scalar(text("select count(*) from outbox")) == 1


async def test_one_read_gives_the_facts_and_the_referral_holding_the_key(client, auth, county) -> None:
    """What a send reads before deciding: the replay check rides on the facts read (one round trip)."""
    await record_consent(client, auth)
    first = await sent(client, auth, key="k-read")
    candidates = county.pseudonymizer.candidates(parse_personal_identity_number(CHILD, today=date.today()))
    async with county.sessions() as session, driver(session, own_transaction=True) as connection:
        facts, existing = await referrals_db.facts_and_key_on(
            connection, sender=SENDER, recipient=RECEIVER, candidates=candidates, key="k-read"
        )
        _, fresh = await referrals_db.facts_and_key_on(
            connection, sender=SENDER, recipient=RECEIVER, candidates=candidates, key="k-other"
        )
        _, elsewhere = await referrals_db.facts_and_key_on(
            connection, sender="nora-grundskola", recipient=RECEIVER, candidates=candidates, key="k-read"
        )
    assert existing is not None and str(existing.id) == first and existing.idempotency_key == "k-read"
    assert fresh is None and elsewhere is None, "a key is the sender's own"
    assert (facts.sender_type, facts.recipient_type) == ("elevhalsa", "bup")
    assert len(facts.consents) == 1


async def test_without_a_legal_basis_it_is_refused_with_reasons_and_remedies(client, auth, county) -> None:
    r = await send(client, auth)
    body = assert_problem(r, 403, "sharing-denied")
    assert {"no-legal-basis", "no-consent"} <= {x["code"] for x in body["reasons"]}
    assert "record-consent" in {x["code"] for x in body["remedies"]}
    assert body["decision_id"]
    async with county.engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from referral")) == 0
        refused = await conn.scalar(
            text("select count(*) from audit_event where action = 'sharing-decision' and outcome = '4'")
        )
    assert refused == 1, "the refusal is on record"


@pytest.mark.parametrize(
    ("over", "pointer"),
    [
        ({"kind": "gossip"}, "/kind"),
        ({"information": {"health": {}}, "data_categories": ["identity"]}, "/information/health"),
        ({"data_categories": ["identity", "health"], "information": {}}, "/concern/text"),
        ({"target": {"organisation_id": "nowhere"}}, "/target"),
        ({"target": {"organisation_id": RECEIVER, "organisation_type": "bup"}}, "/target"),
        ({"child": {"personal_identity_number": "20150311-2384"}}, "/child/personal_identity_number"),
        ({"concern": {"dimensions": ["sad"]}}, "/concern/dimensions/0"),
        (
            {"concern": {"local_codes": {"system": "variant-behovskompassen", "codes": ["x"]}}},
            "/concern/local_codes/codes/0",
        ),
    ],
    ids=["kind", "undeclared-info", "undeclared-text", "unknown-org", "two-targets", "checksum", "dimension", "local"],
)
async def test_invalid_referrals_name_the_field(client, auth, county, over, pointer) -> None:
    await record_consent(client, auth)
    body = assert_problem(await send(client, auth, **over), 422, "invalid-input")
    assert any(e["pointer"].startswith(pointer) for e in body["errors"]), body["errors"]


async def test_a_referral_needs_a_key_and_a_sender_role(client, auth, county) -> None:
    from tests.referrals.helpers import referral_body

    r = await client.post("/v1/referrals", json=referral_body(), headers=auth(SENDER, "system"))
    body = assert_problem(r, 422, "invalid-input")
    assert "Idempotency-Key" in [e["pointer"] for e in body["errors"]]
    coordinator = {**auth("region-samordning", "coordinator"), "Idempotency-Key": "x"}
    assert_problem(await client.post("/v1/referrals", json=referral_body(), headers=coordinator), 403, "forbidden")


async def test_a_target_by_type_and_municipality_is_resolved_through_the_registry(client, auth, county) -> None:
    concern = {"dimensions": ["safe"], "text": "Orosanmälan: ..."}
    rid = await sent(
        client,
        auth,
        org="nora-grundskola",
        kind="orosanmalan",
        target={"organisation_type": "socialtjanst-myndighet", "municipality_code": "1884"},
        data_categories=["identity", "concern-text"],
        information={},
        concern=concern,
    )
    row = await referral(client, auth, "nora-grundskola", rid)
    assert row["recipient_organisation"] == "nora-socialtjanst-myndighet"
    assert row["legal_basis"] == "report-of-concern"


# --- delivery and the closed loop --------------------------------------------------------------------------


async def test_delivered_through_the_mailbox_with_only_the_permitted_data(client, auth, county, worker) -> None:
    await record_consent(client, auth)
    rid = await sent(client, auth)
    assert_problem(await client.get(f"/v1/referrals/{rid}", headers=auth(RECEIVER, "system")), 404, "not-found")

    assert await worker.run_until_idle() >= 1
    [message] = await mailbox(client, auth, RECEIVER)
    doc = message["body"]["referral"]
    assert message["kind"] == "referral" and doc["id"] == rid
    assert doc["child"]["personal_identity_number"] == "201503112383"
    assert set(doc["information"]) == {"school-situation"}, "health was never permitted: stripped"
    assert doc["concern"]["text"] and doc["legal_basis"]["basis"] == "consent"
    assert set(doc["concern"]) == {"text"}, "the concern's codes need the wellbeing assessment: not declared"
    assert doc["kind"] == "remiss"
    assert "Skolsköterskan" not in str(message) and "health" not in doc["permitted_categories"]
    assert (await referral(client, auth, SENDER, rid))["status"] == "requested", "stored is not yet received"

    await ack(client, auth, RECEIVER, message["id"])
    await ack(client, auth, RECEIVER, message["id"])  # idempotent
    assert (await referral(client, auth, SENDER, rid))["status"] == "received"
    seen_by_receiver = await referral(client, auth, RECEIVER, rid)
    assert set(seen_by_receiver["document"]["information"]) == {"school-situation"}

    await worker.run_until_idle()
    [told] = await mailbox(client, auth, SENDER)
    assert told["kind"] == "status-event" and told["body"]["event"]["status"] == "received"


async def test_the_concerns_codes_travel_only_with_the_wellbeing_assessment(client, auth, county, worker) -> None:
    await record_consent(client, auth, data_categories=["identity", "school-situation", "wellbeing-assessment"])
    declared = ["identity", "school-situation", "concern-text", "health"]
    with_codes = await sent(client, auth, data_categories=[*declared, "wellbeing-assessment"])
    without = await sent(client, auth, data_categories=declared)
    await worker.run_until_idle()
    by_id = {m["body"]["referral"]["id"]: m["body"]["referral"] for m in await mailbox(client, auth, RECEIVER)}
    concern = by_id[with_codes]["concern"]
    assert set(concern) == {"dimensions", "local_codes", "trappan_step"}, "concern-text was not consented to"
    assert concern["dimensions"][0]["code"] == "healthy" and concern["trappan_step"] == 2
    assert [c["code"] for c in concern["local_codes"]] == ["trygghet"]
    assert by_id[without]["concern"] == {}, "only the fact of a concern, not what it is about"
    assert by_id[without]["kind"] == "remiss"
    assert "wellbeing-assessment" not in by_id[without]["permitted_categories"]
    seen_by_receiver = await referral(client, auth, RECEIVER, without)
    assert seen_by_receiver["document"]["concern"] == {}
    sender_view = await referral(client, auth, SENDER, without)
    assert sender_view["document"]["concern"]["trappan_step"] == 2, "the sender keeps its whole referral"
    listed = await client.get("/v1/referrals?role=receiver", headers=auth(RECEIVER, "system"))
    by_listed = {r["id"]: r for r in listed.json()["items"]}
    assert (by_listed[without]["dimensions"], by_listed[without]["trappan_step"]) == ([], None)
    assert (by_listed[with_codes]["dimensions"], by_listed[with_codes]["trappan_step"]) == (["healthy", "safe"], 2)
    assert sender_view["dimensions"] == ["healthy", "safe"]


async def test_an_unacknowledged_message_comes_back(client, auth, county, worker) -> None:
    await record_consent(client, auth)
    await sent(client, auth)
    await worker.run_until_idle()
    [first] = await mailbox(client, auth, RECEIVER)
    assert await mailbox(client, auth, RECEIVER) == [], "hidden while the receiver works on it"
    async with county.engine.begin() as conn:
        await conn.execute(text("update mailbox_message set visible_at = now()"))
    [again] = await mailbox(client, auth, RECEIVER)
    assert again["id"] == first["id"] and again["fetch_count"] == 2


async def delivered(client, auth, worker) -> str:  # type: ignore[no-untyped-def]
    await record_consent(client, auth)
    rid = await sent(client, auth)
    await worker.run_until_idle()
    [message] = await mailbox(client, auth, RECEIVER)
    await ack(client, auth, RECEIVER, message["id"])
    return rid


async def test_the_sender_learns_every_step_until_completion(client, auth, county, worker) -> None:
    rid = await delivered(client, auth, worker)
    for body in (
        {"status": "accepted"},
        {"status": "in-progress"},
        {"status": "on-hold", "reason_text": "Väntar på läkarbedömning"},
        {"status": "in-progress"},
        {"status": "completed", "feedback": "Utredning klar; plan upprättad tillsammans med skolan."},
    ):
        r = await event(client, auth, RECEIVER, rid, **body)
        assert r.status_code == 201, r.text
    await worker.run_until_idle()
    statuses = [m["body"]["event"]["status"] for m in await mailbox(client, auth, SENDER)]
    assert statuses == ["received", "accepted", "in-progress", "on-hold", "in-progress", "completed"]
    final = await referral(client, auth, SENDER, rid)
    assert final["status"] == "completed"
    assert final["events"][-1]["feedback"].startswith("Utredning klar")

    after = await event(client, auth, RECEIVER, rid, status="accepted")
    assert assert_problem(after, 409, "conflict")["allowed_transitions"] == [], "completed is final"


async def test_who_may_do_what(client, auth, county, worker) -> None:
    rid = await delivered(client, auth, worker)
    assert_problem(await event(client, auth, SENDER, rid, status="accepted"), 403, "forbidden")
    skipped = assert_problem(await event(client, auth, RECEIVER, rid, status="completed"), 409, "conflict")
    assert skipped["allowed_transitions"] == ["accepted", "cancelled", "rejected"]
    no_reason = await event(client, auth, RECEIVER, rid, status="rejected")
    assert "/reason_code" in [e["pointer"] for e in assert_problem(no_reason, 422, "invalid-input")["errors"]]
    bad_code = await event(client, auth, RECEIVER, rid, status="rejected", reason_code="bored")
    assert_problem(bad_code, 422, "invalid-input")
    assert_problem(await event(client, auth, "orebro-grundskola", rid, status="accepted"), 404, "not-found")

    r = await event(
        client,
        auth,
        RECEIVER,
        rid,
        status="rejected",
        reason_code="wrong-recipient",
        reason_text="Första linjen är rätt nivå",
        suggested_organisation="region-forsta-linjen",
    )
    assert r.status_code == 201
    await worker.run_until_idle()
    told = (await mailbox(client, auth, SENDER))[-1]["body"]["event"]
    assert told["status"] == "rejected" and told["suggested_organisation"] == "region-forsta-linjen"
    assert told["reason_code"] == "wrong-recipient" and told["reason_text"]


async def test_an_event_retried_with_its_key_is_recorded_once(client, auth, county, worker) -> None:
    rid = await delivered(client, auth, worker)
    headers = {**auth(RECEIVER, "system"), "Idempotency-Key": "evt-1"}
    first = await client.post(f"/v1/referrals/{rid}/events", json={"status": "accepted"}, headers=headers)
    second = await client.post(f"/v1/referrals/{rid}/events", json={"status": "accepted"}, headers=headers)
    assert first.status_code == second.status_code == 201 and first.json()["id"] == second.json()["id"]


async def test_cancelled_before_delivery_is_never_delivered(client, auth, county, worker) -> None:
    await record_consent(client, auth)
    rid = await sent(client, auth)
    r = await event(client, auth, SENDER, rid, status="cancelled", reason_text="Fel barn valt")
    assert r.status_code == 201, r.text
    await worker.run_until_idle()
    assert await mailbox(client, auth, RECEIVER) == []
    assert (await referral(client, auth, SENDER, rid))["deliveries"][0]["state"] == "abandoned"


async def test_after_delivery_the_sender_asks_and_the_receiver_confirms_a_cancellation(
    client, auth, county, worker
) -> None:
    rid = await delivered(client, auth, worker)
    await event(client, auth, RECEIVER, rid, status="accepted")
    assert_problem(await event(client, auth, SENDER, rid, status="cancelled", reason_text="x"), 409, "conflict")
    assert_problem(await event(client, auth, RECEIVER, rid, status="cancelled", reason_text="x"), 409, "conflict")
    asked = await event(client, auth, SENDER, rid, type="cancellation-requested", reason_text="Familjen flyttar")
    assert asked.status_code == 201, asked.text
    await worker.run_until_idle()
    assert any(m["body"]["event"]["type"] == "cancellation-requested" for m in await mailbox(client, auth, RECEIVER))
    confirmed = await event(client, auth, RECEIVER, rid, status="cancelled", reason_text="Bekräftat")
    assert confirmed.status_code == 201, confirmed.text


async def test_consent_withdrawn_before_delivery_means_nothing_is_delivered(client, auth, county, worker) -> None:
    consent = await record_consent(client, auth)
    rid = await sent(client, auth)
    r = await client.post(
        f"/v1/consents/{consent['id']}/withdraw",
        json={"withdrawn_by": "vh2", "reason": "Ångrat sig"},
        headers=auth(SENDER, "system"),
    )
    assert r.status_code == 200
    await worker.run_until_idle()
    assert await mailbox(client, auth, RECEIVER) == []
    failed = await referral(client, auth, SENDER, rid)
    assert failed["status"] == "failed" and failed["deliveries"][0]["state"] == "abandoned"
    [told] = await mailbox(client, auth, SENDER)
    assert told["body"]["event"]["status"] == "failed" and "legal basis" in told["body"]["event"]["reason_text"]


async def test_lists_show_each_party_its_own_referrals(client, auth, county, worker) -> None:
    await record_consent(client, auth)
    ids = [await sent(client, auth) for _ in range(3)]
    await worker.run_until_idle()

    def page(org: str, query: str = ""):  # type: ignore[no-untyped-def]
        return client.get(f"/v1/referrals{query}", headers=auth(org, "system"))

    sender_view = (await page(SENDER)).json()
    assert [i["id"] for i in sender_view["items"]] == ids[::-1]
    assert all(i["role"] == "sender" for i in sender_view["items"])
    receiver_view = (await page(RECEIVER, "?role=receiver")).json()
    assert {i["id"] for i in receiver_view["items"]} == set(ids)
    assert (await page("orebro-grundskola")).json()["items"] == []
    first = (await page(SENDER, "?limit=2")).json()
    rest = (await page(SENDER, f"?limit=2&cursor={first['next_cursor']}")).json()
    assert [i["id"] for i in first["items"] + rest["items"]] == ids[::-1] and rest["next_cursor"] is None
    assert CHILD not in str(sender_view) and "201503112383" not in str(sender_view)
    assert (await page(SENDER, "?status=completed")).json()["items"] == []


async def test_reading_a_referral_is_audited(client, auth, county) -> None:
    await record_consent(client, auth)
    rid = await sent(client, auth)
    await referral(client, auth, SENDER, rid)
    async with county.engine.connect() as conn:
        actions = (
            await conn.execute(
                text("select action from audit_event where canonical::jsonb ->> 'entity_id' = :id"), {"id": rid}
            )
        ).scalars()
        assert {"referral-sent", "referral-read"} <= set(actions)


async def test_personal_data_is_encrypted_at_rest_and_purged_after_retention(client, auth, county, worker) -> None:
    await record_consent(client, auth)
    rid = await sent(client, auth)
    await event(client, auth, SENDER, rid, status="entered-in-error")
    async with county.engine.connect() as conn:
        raw = (await conn.execute(text("select payload from referral"))).scalar_one()
        dump = str(
            (
                await conn.execute(
                    text("select r.*, e.* from referral r join referral_event e on e.referral_id = r.id")
                )
            ).all()
        )
    assert b"201503112383" not in raw and b"Skolsk" not in raw and b"school-situation" not in raw
    assert "201503112383" not in dump and "Oro för sömn" not in dump

    assert await worker.purge() == 0, "within the retention period nothing goes"
    async with county.engine.begin() as conn:
        await conn.execute(text("update referral set updated_at = now() - interval '400 days'"))
    assert await worker.purge() == 1
    purged = await referral(client, auth, SENDER, rid)
    assert purged["document"] is None and purged["status"] == "entered-in-error" and purged["kind"] == "remiss"


async def test_graphql_lists_the_same_referrals(client, auth, county) -> None:
    await record_consent(client, auth)
    rid = await sent(client, auth)
    q = {
        "query": '{ referrals(role: "sender") { __typename ... on ReferralPage { items { id status role kind } } '
        "... on ForbiddenProblem { detail } ... on AuthenticationProblem { detail } } }"
    }
    mine = (await client.post("/graphql", json=q, headers=auth(SENDER, "system"))).json()["data"]["referrals"]
    assert mine == {
        "__typename": "ReferralPage",
        "items": [{"id": rid, "status": "requested", "role": "sender", "kind": "remiss"}],
    }
    other = (await client.post("/graphql", json=q, headers=auth("orebro-grundskola", "system"))).json()["data"][
        "referrals"
    ]
    assert other["items"] == []
    coordinator = await client.post("/graphql", json=q, headers=auth("region-samordning", "coordinator"))
    assert coordinator.status_code == 403  # the request's only field is not for coordinators
    assert coordinator.json()["errors"][0]["extensions"]["type"] == "/problems/forbidden"
    anonymous = await client.post("/graphql", json=q)
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["type"] == "/problems/unauthenticated"
