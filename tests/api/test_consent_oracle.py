"""Issue #9, item 1: the decision engine and the consent API are no oracle about other organisations'
consents. The attacker is a school's case system in another municipality (orebro-grundskola) that knows a
child's personal identity number; the consent was recorded by Nora's student health team for "any school"
(by type) to BUP. The attacker compares answers with and without that consent, byte for byte."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem
from tests.referrals.helpers import ack, mailbox, referral_body, set_endpoint, worker_for

CHILD = "20150311-2383"
RECORDER = "nora-elevhalsa"
ATTACKER = "orebro-grundskola"  # type grundskola: covered by type as a sender, named nowhere by id
NOW = datetime.now(UTC)

Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def county(client: httpx.AsyncClient, runtime: Runtime) -> Runtime:
    async with runtime.sessions() as session:
        await load_demo(session)
    for org in (RECORDER, ATTACKER, "region-bup", "kumla-grundskola"):
        await set_endpoint(runtime, org, "mailbox", {})
    return runtime


def consent_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "child": {"personal_identity_number": CHILD},
        "guardian_count": 2,
        "grantors": [{"role": "guardian", "reference": "vh1"}, {"role": "guardian", "reference": "vh2"}],
        "data_categories": ["identity", "school-situation"],
        "from_parties": {"organisation_types": ["grundskola"]},
        "to_parties": {"organisation_types": ["bup"]},
        "purposes": ["remiss"],
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=180)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "elevhalsa-journal:2026/1142",
    }
    body.update(over)
    return body


async def record(client: httpx.AsyncClient, auth: Auth, **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/consents", json=consent_body(**over), headers=auth(RECORDER, "system"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def question(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "to_organisation": "region-bup",
        "child": {"personal_identity_number": CHILD},
        "purpose": "remiss",
        "data_categories": ["identity", "school-situation"],
    }
    body.update(over)
    return body


async def answer(client: httpx.AsyncClient, auth: Auth, org: str = ATTACKER, **over: Any) -> str:
    """The dry run's answer as the attacker sees it, with only its own id and timestamp blanked."""
    r = await client.post("/v1/sharing-decisions", json=question(**over), headers=auth(org, "system"))
    assert r.status_code == 200, r.text
    body = r.json()
    return r.text.replace(body["id"], "<id>").replace(body["decided_at"], "<at>")


async def refusal(client: httpx.AsyncClient, auth: Auth, **over: Any) -> str:
    """A referral attempt's refusal (403 problem+json), its decision id and request id blanked."""
    headers = {**auth(ATTACKER, "system"), "Idempotency-Key": uuid.uuid4().hex}
    r = await client.post("/v1/referrals", json=referral_body(**over), headers=headers)
    body = assert_problem(r, 403, "sharing-denied")
    text = r.text.replace(body["decision_id"], "<id>")
    return text.replace(body["request_id"], "<request>") if body.get("request_id") else text


PROBES = {
    "purpose-not-covered": {"purpose": "samverkansforfragan"},
    "recipient-not-covered": {"to_organisation": "region-buh"},
    "categories-not-covered": {"data_categories": ["health"]},
}
REFERRAL_PROBE = {
    "kind": "samverkansforfragan",
    "data_categories": ["identity", "school-situation"],
    "information": {},
    "concern": {"dimensions": ["healthy"]},
}


async def test_a_consent_the_asker_may_not_see_reads_exactly_as_no_consent(client, auth, county) -> None:
    before = {name: await answer(client, auth, **probe) for name, probe in PROBES.items()}
    covered_before = await answer(client, auth)
    unseen_sender_before = await answer(client, auth, org="orebro-vardcentral")
    referral_before = await refusal(client, auth, **REFERRAL_PROBE)

    consent = await record(client, auth)
    for name, probe in PROBES.items():
        after = await answer(client, auth, **probe)
        assert after == before[name], f"{name}: the answer changed because another organisation's consent exists"
        assert consent["id"] not in after
    assert await answer(client, auth, org="orebro-vardcentral") == unseen_sender_before
    assert await refusal(client, auth, **REFERRAL_PROBE) == referral_before

    r = await client.post(
        f"/v1/consents/{consent['id']}/withdraw",
        json={"withdrawn_by": "vh2", "reason": "Vill inte längre"},
        headers=auth(RECORDER, "system"),
    )
    assert r.status_code == 200, r.text
    assert await answer(client, auth) == covered_before, "a withdrawn consent of another organisation: no trace"


async def test_naming_an_unseen_consent_by_id_reads_as_a_consent_that_does_not_exist(client, auth, county) -> None:
    consent = await record(client, auth, purposes=["sip-kallelse"])
    guessed, real = str(uuid.uuid4()), consent["id"]
    by_real = await answer(client, auth, legal_basis="consent", basis_reference=real)
    by_guess = await answer(client, auth, legal_basis="consent", basis_reference=guessed)
    assert by_real.replace(real, "<ref>") == by_guess.replace(guessed, "<ref>")


async def test_a_consent_the_asker_may_not_see_still_allows_but_is_not_named(client, auth, county) -> None:
    consent = await record(client, auth)
    r = await client.post(
        "/v1/sharing-decisions",
        json=question(data_categories=["identity", "school-situation", "health"]),
        headers=auth(ATTACKER, "system"),
    )
    d = r.json()
    assert d["allowed"] is True and d["legal_basis"] == "consent" and d["basis_reference"] is None
    assert d["permitted_categories"] == ["identity", "school-situation"] and d["denied_categories"] == ["health"]
    assert d["reasons"][0]["code"] == "consent-of-another-organisation-applies"
    assert consent["id"] not in r.text and "elevhalsa-journal" not in r.text

    mine = await client.post("/v1/sharing-decisions", json=question(), headers=auth(RECORDER, "system"))
    assert mine.json()["allowed"] is False, "the recorder is not a grundskola"
    named = await record(client, auth, from_parties={"organisation_ids": [ATTACKER]})
    r = await client.post("/v1/sharing-decisions", json=question(), headers=auth(ATTACKER, "system"))
    assert r.json()["basis_reference"] in (named["id"], consent["id"])
    assert r.json()["basis_reference"] == named["id"], "the consent naming the asker is seen and chosen first"


# --- GET /v1/consents: a consent naming a type is read by that type's parties to an actual share -----------


async def test_a_consent_naming_a_type_is_readable_only_by_parties_to_a_share(client, auth, county) -> None:
    consent = await record(client, auth)
    cid = consent["id"]
    nowhere = await client.get(f"/v1/consents/{uuid.uuid4()}", headers=auth(ATTACKER, "system"))
    assert_problem(nowhere, 404, "not-found")

    def same_as_nowhere(r: httpx.Response) -> None:
        body = assert_problem(r, 404, "not-found")
        assert (body["type"], body["title"], body["detail"]) == (
            nowhere.json()["type"],
            nowhere.json()["title"],
            nowhere.json()["detail"],
        )

    # Of the type, but no share yet: as if it did not exist (read, search and withdraw alike).
    same_as_nowhere(await client.get(f"/v1/consents/{cid}", headers=auth(ATTACKER, "system")))
    same_as_nowhere(await client.get(f"/v1/consents/{cid}", headers=auth("region-bup", "system")))
    search = {"child": {"personal_identity_number": CHILD}}
    r = await client.post("/v1/consents/search", json=search, headers=auth(ATTACKER, "system"))
    assert r.status_code == 200 and r.json()["items"] == []

    # The school sends a referral under it: it has now taken part in a share, and may read the consent.
    headers = {**auth(ATTACKER, "system"), "Idempotency-Key": "share-1"}
    body = referral_body(data_categories=["identity", "school-situation"], information={}, concern={"dimensions": []})
    sent = await client.post("/v1/referrals", json=body, headers=headers)
    assert sent.status_code == 202, sent.text
    assert (await client.get(f"/v1/consents/{cid}", headers=auth(ATTACKER, "system"))).status_code == 200
    r = await client.post("/v1/consents/search", json=search, headers=auth(ATTACKER, "system"))
    assert [c["id"] for c in r.json()["items"]] == [cid]
    # Another school of the same type took part in nothing.
    same_as_nowhere(await client.get(f"/v1/consents/{cid}", headers=auth("kumla-grundskola", "system")))

    # BUP, named by type: once the referral is delivered to it, not before.
    same_as_nowhere(await client.get(f"/v1/consents/{cid}", headers=auth("region-bup", "system")))
    async with httpx.AsyncClient() as http:
        assert await worker_for(county, http).run_until_idle() >= 1
    [message] = await mailbox(client, auth, "region-bup")
    await ack(client, auth, "region-bup", message["id"])
    assert (await client.get(f"/v1/consents/{cid}", headers=auth("region-bup", "system"))).status_code == 200


async def test_only_the_recording_organisation_withdraws(client, auth, county) -> None:
    consent = await record(client, auth, to_parties={"organisation_ids": ["region-bup"]})
    url = f"/v1/consents/{consent['id']}/withdraw"
    body = {"withdrawn_by": "vh1", "reason": "r"}
    party = await client.post(url, json=body, headers=auth("region-bup", "system"))
    assert_problem(party, 403, "forbidden")  # BUP may read it (named by id), so no existence is revealed
    stranger = await client.post(url, json=body, headers=auth(ATTACKER, "system"))
    assert_problem(stranger, 404, "not-found")
    admin = await client.post(url, json=body, headers=auth(RECORDER, "admin"))
    assert admin.status_code == 200 and admin.json()["state"] == "withdrawn"
