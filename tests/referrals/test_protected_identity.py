"""Protected identity through HTTP, with real loopback receivers: what a school and social services get for
a protected child, the sticky mark, clearing it, and that nothing about it reaches logs, other answers or
the flows."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hub.devtools.demo import load_demo
from hub.domain.identity import parse_personal_identity_number
from hub.runtime import Runtime
from tests.conftest import empty_database
from tests.logscan import CapturingHandler
from tests.loopback import Recorder, serve
from tests.referrals.helpers import CHILD, mailbox, record_consent, set_endpoint, worker_for

ELEVHALSA = "nora-elevhalsa"  # the first sender
SCHOOL = "nora-grundskola"  # a recipient the policy does not name (and the second sender)
SOCIAL = "nora-socialtjanst-myndighet"  # social services' statutory unit: named by the default policy
OTHER_CHILD = "20121212-1212"  # never marked
ADDRESS = "Storgatan 1, 713 30 Nora"


async def prepare(client: httpx.AsyncClient, auth, runtime: Runtime) -> Runtime:  # type: ignore[no-untyped-def]
    """The demo county; the pupil health team has the guardians' consent to a request to the school."""
    async with runtime.sessions() as session:
        await load_demo(session)
    await set_endpoint(runtime, ELEVHALSA, "mailbox", {})
    await set_endpoint(runtime, SOCIAL, "mailbox", {})
    await record_consent(
        client,
        auth,
        data_categories=["identity", "guardians-contact", "school-situation"],
        from_parties={"organisation_ids": [ELEVHALSA]},
        to_parties={"organisation_ids": [SCHOOL]},
        purposes=["samverkansforfragan"],
    )
    return runtime


@pytest.fixture
async def county(client: httpx.AsyncClient, auth, runtime: Runtime) -> Runtime:  # type: ignore[no-untyped-def]
    return await prepare(client, auth, runtime)


def child(pin: str, protected: bool | None) -> dict[str, Any]:
    """The referral's child; ``protected`` None: the field left out."""
    given = {"personal_identity_number": pin}
    return given if protected is None else {**given, "protected_identity": protected}


def to_school(*, protected: bool | None, pin: str = CHILD) -> dict[str, Any]:
    return {
        "kind": "samverkansforfragan",
        "target": {"organisation_id": SCHOOL},
        "child": child(pin, protected),
        "concern": {"dimensions": ["achieving"], "trappan_step": 2},
        "data_categories": ["identity", "guardians-contact", "school-situation"],
        "information": {
            "guardians-contact": {"address": ADDRESS, "phone": "070-000 00 00"},
            "school-situation": {"attendance_percent": 71, "class": "5A"},
        },
    }


def report_to_social(*, protected: bool | None = None, pin: str = CHILD) -> dict[str, Any]:
    return {
        "kind": "orosanmalan",
        "target": {"organisation_id": SOCIAL},
        "child": child(pin, protected),
        "concern": {"dimensions": ["safe"], "trappan_step": 3, "text": "Oro för barnets säkerhet hemma."},
        "data_categories": ["identity", "guardians-contact", "concern-text"],
        "information": {"guardians-contact": {"address": ADDRESS}},
    }


async def post(client: httpx.AsyncClient, auth, org: str, body: dict[str, Any]) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {**auth(org, "system"), "Idempotency-Key": uuid.uuid4().hex}
    return await client.post("/v1/referrals", json=body, headers=headers)


async def deliver(runtime: Runtime) -> None:
    async with httpx.AsyncClient() as http:
        await worker_for(runtime, http).run_until_idle()


def referrals_in(recorder: Recorder) -> list[dict[str, Any]]:
    return [r.json()["referral"] for r in recorder.requests if "referral" in r.json()]


async def point_school(runtime: Runtime, url: str) -> None:
    await set_endpoint(runtime, SCHOOL, "webhook", {"url": url + "/hub", "secret_ref": "demo-webhook"})


async def test_a_school_gets_a_protected_childs_referral_without_identity_address_or_guardians_and_a_marker(
    client, auth, county
) -> None:
    recorder = Recorder()
    with serve(recorder) as url:
        await point_school(county, url)
        r = await post(client, auth, ELEVHALSA, to_school(protected=True))
        assert r.status_code == 202, r.text
        await deliver(county)
    [delivered] = referrals_in(recorder)
    raw = json.dumps(delivered, ensure_ascii=False)
    assert "child" not in delivered and "guardians-contact" not in delivered["information"]
    assert ADDRESS not in raw and CHILD.replace("-", "")[2:8] not in raw
    assert delivered["information"] == {"school-situation": {"attendance_percent": 71, "class": "5A"}}
    assert delivered["permitted_categories"] == ["school-situation"]
    marker = delivered["protected_identity"]
    assert marker["protected"] is True and marker["withheld_categories"] == ["guardians-contact", "identity"]
    assert marker["contact"]["organisation"]["organisation_id"] == ELEVHALSA  # the sender's, not the child's
    assert marker["contact"]["reply_to"].endswith(f"/v1/referrals/{delivered['id']}/events")
    # The receiver's own read is stripped the same way and carries the marker.
    read = (await client.get(f"/v1/referrals/{delivered['id']}", headers=auth(SCHOOL, "system"))).json()
    assert "child" not in read["document"] and ADDRESS not in json.dumps(read, ensure_ascii=False)
    assert read["document"]["protected_identity"]["withheld_categories"] == ["guardians-contact", "identity"]
    assert read["data_categories"] == ["school-situation"]
    # The sender is told why, and how the school reaches it instead.
    own = (await client.get(f"/v1/referrals/{delivered['id']}", headers=auth(ELEVHALSA, "system"))).json()
    assert own["document"]["child"]["personal_identity_number"]  # the sender keeps its own referral whole


async def test_the_mark_is_sticky_and_social_services_gets_only_what_the_policy_releases(client, auth, county) -> None:
    r = await post(client, auth, ELEVHALSA, to_school(protected=True))
    assert r.status_code == 202, r.text
    # A second sender, who does not mark the child (nor says it is unprotected), reports concern.
    r = await post(client, auth, SCHOOL, report_to_social(protected=False))
    assert r.status_code == 202, r.text
    await deliver(county)
    [message] = [m for m in await mailbox(client, auth, SOCIAL) if m["kind"] == "referral"]
    report = message["body"]["referral"]
    assert report["child"]["personal_identity_number"]  # who the child is: social services need it
    assert "guardians-contact" not in report["information"] and ADDRESS not in json.dumps(report, ensure_ascii=False)
    assert report["permitted_categories"] == ["concern-text", "identity"]
    assert report["protected_identity"]["withheld_categories"] == ["guardians-contact"]
    assert report["protected_identity"]["contact"]["organisation"]["organisation_id"] == SCHOOL
    # The second sender's answer names the protection as the reason, not where the mark came from.
    decision_id = (await client.get(f"/v1/referrals/{r.json()['id']}", headers=auth(SCHOOL, "system"))).json()[
        "decision_id"
    ]
    async with county.engine.connect() as conn:
        explanation = await conn.scalar(
            text("select explanation from sharing_decision where id = :id"), {"id": uuid.UUID(decision_id)}
        )
    assert "identity-protected" in [r["code"] for r in explanation["reasons"]]
    assert [r["code"] for r in explanation["remedies"]] == ["recipient-reaches-sender"]


async def test_only_an_organisation_the_policy_names_clears_a_mark_audited_and_the_refusal_tells_nothing(
    client, auth, county
) -> None:
    assert (await post(client, auth, ELEVHALSA, to_school(protected=True))).status_code == 202

    async def clear(org: str, pin: str) -> httpx.Response:
        body = {"child": {"personal_identity_number": pin}}
        return await client.post("/v1/protected-identity/clearances", json=body, headers=auth(org, "system"))

    marked, unmarked = await clear(SCHOOL, CHILD), await clear(SCHOOL, OTHER_CHILD)
    assert marked.status_code == unmarked.status_code == 403
    per_request = ("request_id", "instance")
    assert {k: v for k, v in marked.json().items() if k not in per_request} == {
        k: v for k, v in unmarked.json().items() if k not in per_request
    }
    assert marked.headers["content-type"].startswith("application/problem+json")
    # Still protected after the school's refused clear, and the mark needs no repeating.
    assert (await post(client, auth, ELEVHALSA, to_school(protected=None))).status_code == 202

    assert (await clear(SOCIAL, CHILD)).status_code == 204
    assert (await clear(SOCIAL, OTHER_CHILD)).status_code == 204  # the same answer when there was no mark
    async with county.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select actor_organisation, canonical from audit_event where action = 'protected-identity-cleared'"
                    " order by id"
                )
            )
        ).all()
    assert [row[0] for row in rows] == [SOCIAL, SOCIAL]
    assert [json.loads(row[1])["details"]["cleared"] for row in rows] == [True, False]
    # Cleared: the next referral to the school carries identity again, and no marker.
    recorder = Recorder()
    with serve(recorder) as url:
        await point_school(county, url)
        await deliver(county)  # the two queued while marked: still withheld
        assert all("child" not in d for d in referrals_in(recorder))
        assert (await post(client, auth, ELEVHALSA, to_school(protected=None))).status_code == 202
        await deliver(county)
    last = referrals_in(recorder)[-1]
    assert last["child"]["personal_identity_number"] and "protected_identity" not in last


async def test_no_log_line_says_a_child_is_protected(client, auth, county) -> None:
    handler = CapturingHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        recorder = Recorder()
        with serve(recorder) as url:
            await point_school(county, url)
            assert (await post(client, auth, ELEVHALSA, to_school(protected=True))).status_code == 202
            assert (await post(client, auth, SCHOOL, report_to_social())).status_code == 202
            refused = {**to_school(protected=True), "data_categories": ["identity"], "information": {}}
            assert (await post(client, auth, ELEVHALSA, refused)).status_code == 403
            await deliver(county)
            body = {"child": {"personal_identity_number": CHILD}}
            for org in (SCHOOL, SOCIAL):
                await client.post("/v1/protected-identity/clearances", json=body, headers=auth(org, "system"))
    finally:
        root.removeHandler(handler)
    pin = parse_personal_identity_number(CHILD, today=date.today())
    pseudonym = county.pseudonymizer.pseudonym(pin)
    assert handler.lines  # the flow logged something: the check below is not vacuous
    for line in handler.lines:
        assert pin.canonical not in line and CHILD not in line and pseudonym not in line, line
        lowered = line.replace("/v1/protected-identity/clearances", "").lower()
        assert "protected" not in lowered and "skyddad" not in lowered, line


async def flow_state(runtime: Runtime) -> list[tuple[Any, ...]]:
    async with runtime.engine.connect() as conn:
        rollup = (
            await conn.execute(
                text(
                    """select measure, dimension, week, municipality, sender_type, recipient_type, kind,
                              trappan_step, sum(value), sum(children) from flow_rollup
                       group by cell, 1, 2, 3, 4, 5, 6, 7, 8 order by 1, 2, 3, 4, 5, 6, 7, 8"""
                )
            )
        ).all()
        referrals = (
            await conn.execute(
                text(
                    """select week, municipality, sender_type, recipient_type, kind, trappan_step, status, dimensions
                       from flow_referral order by 1, 2, 3, 4, 5, 6, 7"""
                )
            )
        ).all()
    return [tuple(r) for r in rollup] + [tuple(r) for r in referrals]


async def test_the_flows_are_the_same_with_and_without_protection(client, auth, county, runtime) -> None:
    async def scenario(protected: bool) -> tuple[list[tuple[Any, ...]], Any]:
        recorder = Recorder()
        with serve(recorder) as url:
            await point_school(county, url)
            assert (await post(client, auth, ELEVHALSA, to_school(protected=protected))).status_code == 202
            assert (await post(client, auth, SCHOOL, report_to_social())).status_code == 202
            await deliver(county)
        coordinator = auth("region-samordning", "coordinator")
        counts = (await client.get("/v1/flows/counts", headers=coordinator)).json()
        return await flow_state(county), counts

    plain = await scenario(protected=False)
    await empty_database(runtime)  # the same county again, from nothing
    await prepare(client, auth, runtime)
    protected = await scenario(protected=True)
    assert plain[0] and plain[0] == protected[0]
    assert plain[1] == protected[1]


async def test_a_mark_set_after_delivery_applies_to_the_receivers_later_reads(client, auth, county) -> None:
    await set_endpoint(county, SCHOOL, "mailbox", {})
    r = await post(client, auth, SCHOOL, report_to_social())  # not (yet) known to be protected
    assert r.status_code == 202, r.text
    await deliver(county)  # left in social services' mailbox whole, not yet fetched
    assert (await post(client, auth, ELEVHALSA, to_school(protected=True))).status_code == 202

    [message] = [m for m in await mailbox(client, auth, SOCIAL) if m["kind"] == "referral"]
    copy = message["body"]["referral"]
    assert copy["child"]["personal_identity_number"] and "guardians-contact" not in copy["information"]
    assert copy["protected_identity"]["withheld_categories"] == ["guardians-contact"]
    assert copy["permitted_categories"] == ["concern-text", "identity"]
    read = (await client.get(f"/v1/referrals/{r.json()['id']}", headers=auth(SOCIAL, "system"))).json()
    assert ADDRESS not in json.dumps(read, ensure_ascii=False) and read["document"]["protected_identity"]
    assert read["data_categories"] == ["concern-text", "identity"]


async def test_a_named_person_offer_for_a_protected_child_carries_the_marker_not_the_identity(
    client, auth, county
) -> None:
    upper_secondary = "nora-gymnasieskola"
    await set_endpoint(county, upper_secondary, "mailbox", {})
    body = {"child": {"personal_identity_number": CHILD}, "stage": "school", "professional_ref": "rektor-1"}
    assert (await client.post("/v1/children/team/named-person", json=body, headers=auth(SCHOOL))).status_code < 300
    assert (await post(client, auth, ELEVHALSA, to_school(protected=True))).status_code == 202
    body = {
        "child": {"personal_identity_number": CHILD},
        "to_organisation": upper_secondary,
        "stage": "upper-secondary",
    }
    r = await client.post("/v1/children/team/offers", json=body, headers=auth(SCHOOL))
    assert r.status_code == 201, r.text
    await deliver(county)
    [message] = [m for m in await mailbox(client, auth, upper_secondary) if m["kind"] == "team-offer"]
    offer = message["body"]["team_offer"]
    assert "child" not in offer and "accept" in offer
    assert offer["protected_identity"]["contact"]["organisation"]["organisation_id"] == SCHOOL
    assert offer["protected_identity"]["withheld_categories"] == ["guardians-contact", "identity"]


async def test_an_organisation_without_a_basis_cannot_tell_a_protected_child_from_any_other(
    client, auth, county
) -> None:
    r = await post(client, auth, ELEVHALSA, to_school(protected=True))  # the hub now keeps CHILD's mark
    assert r.status_code == 202, r.text

    async def ask(pin: str) -> dict[str, Any]:
        question = {
            "to_organisation": SCHOOL,
            "child": {"personal_identity_number": pin},
            "purpose": "samverkansforfragan",
            "data_categories": ["identity", "guardians-contact", "school-situation"],
        }
        r = await client.post("/v1/sharing-decisions", json=question, headers=auth("region-bup", "system"))
        assert r.status_code in (200, 201), r.text
        answer = r.json()
        return {k: v for k, v in answer.items() if k not in ("id", "decided_at")}

    protected, other = await ask(CHILD), await ask(OTHER_CHILD)
    assert protected == other  # nothing lets BUP, which has no basis, learn that CHILD is protected
    assert "identity-protected" not in json.dumps(protected)
    # The pupil health team, whose consent covers the identity, is told: it needs to know why it won't travel.
    r = await client.post(
        "/v1/sharing-decisions",
        json={
            "to_organisation": SCHOOL,
            "child": {"personal_identity_number": CHILD},
            "purpose": "samverkansforfragan",
            "data_categories": ["identity", "school-situation"],
        },
        headers=auth(ELEVHALSA, "system"),
    )
    assert "identity-protected" in [reason["code"] for reason in r.json()["reasons"]]
