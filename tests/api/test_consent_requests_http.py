"""Consent requests to guardians over HTTP (issue #14, section 4): each guardian pending, answers from the
e-service, the consent made when every required grantor agreed, a refusal as an input to decisions, 410
after the answer period, 422 for someone not listed, visibility to the requester only, audit, sealing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem
from tests.api.test_lawful_sharing_http import CHILD, Auth, ask
from tests.api.test_lawful_sharing_http import demo as demo  # the fixture
from tests.api.test_statutes_in_force import clock as clock  # the fixture

REQUESTER = "nora-elevhalsa"
EVIDENCE = "e-tjanst:signering/2026/5511"


def request_body(now: datetime, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "child": {"personal_identity_number": CHILD},
        "guardian_count": 2,
        "guardians": ["vh1", "vh2"],
        "data_categories": ["identity", "school-situation", "wellbeing-assessment"],
        "from_parties": {"organisation_ids": [REQUESTER]},
        "to_parties": {"organisation_types": ["bup"]},
        "purposes": ["remiss"],
        "valid_from": (now - timedelta(hours=1)).isoformat(),
        "valid_until": (now + timedelta(days=180)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "answer_by": (now + timedelta(days=14)).isoformat(),
    }
    body.update(over)
    return body


async def make(client: httpx.AsyncClient, auth: Auth, now: datetime, **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/consent-requests", json=request_body(now, **over), headers=auth(REQUESTER, "system"))
    assert r.status_code == 201, r.text
    return r.json()


async def answer(
    client: httpx.AsyncClient, auth: Auth, request_id: str, reference: str, *, agreed: bool = True, **over: Any
) -> httpx.Response:
    body = {"role": "guardian", "reference": reference, "agreed": agreed, "evidence_reference": EVIDENCE}
    body |= {"method": "bankid", **over}
    return await client.post(f"/v1/consent-requests/{request_id}/answers", json=body, headers=auth(REQUESTER, "system"))


def now() -> datetime:
    return datetime.now(UTC)


async def test_every_guardian_agreeing_makes_the_consent_and_links_it(client, auth, demo) -> None:
    made = await make(client, auth, now())
    assert made["state"] == "pending" and [g["status"] for g in made["grantors"]] == ["pending", "pending"]
    assert made["consent_id"] is None and CHILD not in str(made)

    first = await answer(client, auth, made["id"], "vh1")
    assert first.status_code == 200 and first.json()["state"] == "pending" and first.json()["consent_id"] is None
    second = (await answer(client, auth, made["id"], "vh2")).json()
    assert second["state"] == "agreed" and second["grantors"][1]["evidence_reference"] == EVIDENCE
    consent_id = second["consent_id"]
    consent = await client.get(f"/v1/consents/{consent_id}", headers=auth(REQUESTER, "system"))
    assert consent.status_code == 200 and consent.json()["state"] == "active"
    assert consent.json()["evidence_reference"] == f"consent-request:{made['id']}"
    assert sorted(g["reference"] for g in consent.json()["grantors"]) == ["vh1", "vh2"]

    decision = await ask(client, auth, data_categories=["identity", "school-situation"])
    assert decision["allowed"] and decision["basis_reference"] == consent_id
    again = await answer(client, auth, made["id"], "vh1")
    assert_problem(again, 409, "conflict")

    r = await client.get("/v1/audit", headers=auth(REQUESTER, "auditor"))
    actions = [e["action"] for e in r.json()["items"]]
    assert {"consent-requested", "consent-request-answered", "consent-recorded"} <= set(actions)
    assert EVIDENCE not in str(r.json()) and "bankid" not in str(r.json())


async def test_only_the_requester_sees_or_answers_its_request(client, auth, demo) -> None:
    made = await make(client, auth, now())
    own = await client.get(f"/v1/consent-requests/{made['id']}", headers=auth(REQUESTER, "professional"))
    assert own.status_code == 200 and own.json()["id"] == made["id"]
    for org in ("region-bup", "orebro-grundskola"):
        other = await client.get(f"/v1/consent-requests/{made['id']}", headers=auth(org, "system"))
        assert_problem(other, 404, "not-found")
        body = {"role": "guardian", "reference": "vh1", "agreed": True, "evidence_reference": "x", "method": "bankid"}
        r = await client.post(f"/v1/consent-requests/{made['id']}/answers", json=body, headers=auth(org, "system"))
        assert_problem(r, 404, "not-found")
    assert_problem(
        await client.get("/v1/consent-requests/not-an-id", headers=auth(REQUESTER, "system")), 404, "not-found"
    )


async def test_a_refusal_closes_the_request_and_turns_decisions_to_other_bases(client, auth, demo) -> None:
    made = await make(client, auth, now())
    refused = (await answer(client, auth, made["id"], "vh2", agreed=False)).json()
    assert refused["state"] == "refused" and refused["consent_id"] is None
    assert_problem(await answer(client, auth, made["id"], "vh1"), 409, "conflict")

    decision = await ask(client, auth, data_categories=["identity", "school-situation"])
    assert not decision["allowed"]
    assert "consent-refused" in {r["code"] for r in decision["reasons"]}
    remedies = {r["code"] for r in decision["remedies"]}
    assert "basis-other-than-consent" in remedies and "record-consent" not in remedies
    # Another organisation's decision about the child learns nothing of the refusal.
    other = await ask(client, auth, org="nora-grundskola", data_categories=["identity"])
    assert "consent-refused" not in {r["code"] for r in other["reasons"]}
    assert "record-consent" in {r["code"] for r in other["remedies"]}


async def test_an_answer_after_the_answer_period_is_410(client, auth, demo, clock) -> None:
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    clock.at = start
    made = await make(client, auth, start, answer_by=(start + timedelta(days=7)).isoformat())
    clock.at = start + timedelta(days=7)
    late = await answer(client, auth, made["id"], "vh1")
    assert_problem(late, 410, "gone")
    read = await client.get(f"/v1/consent-requests/{made['id']}", headers=auth(REQUESTER, "system"))
    assert read.json()["state"] == "expired" and read.json()["grantors"][0]["status"] == "pending"


async def test_an_answer_from_someone_not_listed_is_422(client, auth, demo) -> None:
    made = await make(client, auth, now())
    r = await answer(client, auth, made["id"], "morfar")
    assert_problem(r, 422, "invalid-input")
    assert r.json()["errors"][0]["pointer"] == "/reference"
    child = await answer(client, auth, made["id"], "vh1", role="child")  # listed as a guardian, not the child
    assert_problem(child, 422, "invalid-input")
    read = await client.get(f"/v1/consent-requests/{made['id']}", headers=auth(REQUESTER, "system"))
    assert [g["status"] for g in read.json()["grantors"]] == ["pending", "pending"]


async def test_the_child_is_asked_by_age_per_policy(client, auth, demo, clock) -> None:
    at = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)  # the child (born 2015-03-11) is 15: the default age rule
    clock.at = at
    r = await client.post("/v1/consent-requests", json=request_body(at), headers=auth(REQUESTER, "system"))
    assert_problem(r, 422, "invalid-input")
    assert "/child/reference" in {e["pointer"] for e in r.json()["errors"]}

    made = await make(client, auth, at, child={"personal_identity_number": CHILD, "reference": "barnet"})
    assert made["child_required"] is True
    for reference in ("vh1", "vh2"):
        assert (await answer(client, auth, made["id"], reference)).json()["consent_id"] is None
    done = (await answer(client, auth, made["id"], "barnet", role="child")).json()
    assert done["state"] == "agreed" and done["consent_id"] is not None


async def test_a_request_checks_what_it_asks_like_a_consent(client, auth, demo) -> None:
    cases = [
        ({"guardians": ["vh1"]}, "/guardians"),
        ({"guardians": ["vh1", "vh1"]}, "/guardians"),
        ({"data_categories": ["identity", "shoe-size"]}, "/data_categories/1"),
        ({"valid_until": (now() + timedelta(days=800)).isoformat()}, "/valid_until"),
        ({"answer_by": (now() - timedelta(days=1)).isoformat()}, "/answer_by"),
    ]
    for over, pointer in cases:
        r = await client.post(
            "/v1/consent-requests", json=request_body(now(), **over), headers=auth(REQUESTER, "system")
        )
        assert_problem(r, 422, "invalid-input")
        assert pointer in {e["pointer"] for e in r.json()["errors"]}, (over, r.json())


async def test_free_texts_are_sealed_at_rest(client, auth, demo, runtime: Runtime) -> None:
    made = await make(
        client, auth, now(), guardians=["vh-Anna", "vh-Bo"], information_given={"language": "fi", "form": "tolk-Kalle"}
    )
    await answer(client, auth, made["id"], "vh-Anna")
    async with runtime.sessions() as session:
        (document,) = (await session.execute(text("select document::text from consent_request"))).scalars()
    for secret in ("vh-Anna", "vh-Bo", "tolk-Kalle", EVIDENCE, "bankid"):
        assert secret not in document
    read = await client.get(f"/v1/consent-requests/{made['id']}", headers=auth(REQUESTER, "system"))
    assert read.json()["grantors"][0]["reference"] == "vh-Anna" and read.json()["grantors"][0]["method"] == "bankid"
