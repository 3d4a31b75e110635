"""A mailbox fetch hands out a referral's content: the audit trail shows it as a read, with its legal
basis, like reading the referral through ``GET /v1/referrals/{id}``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from hub.services.audit_sealer import seal_all
from tests.referrals.helpers import (
    CHILD,
    RECEIVER,
    SENDER,
    ack,
    mailbox,
    record_consent,
    sent,
    set_endpoint,
    worker_for,
)

Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def delivered(client: httpx.AsyncClient, auth: Auth, runtime: Runtime) -> AsyncIterator[str]:
    """A referral waiting in the receiver's mailbox; its id."""
    async with runtime.sessions() as session:
        await load_demo(session)
    for org in (SENDER, RECEIVER):
        await set_endpoint(runtime, org, "mailbox", {})
    await record_consent(client, auth)
    referral_id = await sent(client, auth)
    async with httpx.AsyncClient() as http:
        await worker_for(runtime, http).run_until_idle()
    yield referral_id


async def reads(client: httpx.AsyncClient, auth: Auth, org: str, referral_id: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/audit?action=referral-read", headers=auth(org, "auditor"))
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["entity_id"] == referral_id]


async def test_a_mailbox_fetch_is_audited_as_a_read_with_its_legal_basis(
    client: httpx.AsyncClient, auth: Auth, delivered: str
) -> None:
    assert await reads(client, auth, RECEIVER, delivered) == [], "nothing read yet"

    [message] = await mailbox(client, auth, RECEIVER)
    assert message["body"]["referral"]["id"] == delivered

    [entry] = await reads(client, auth, RECEIVER, delivered)
    assert entry["actor_organisation"] == RECEIVER and entry["counterpart_organisation"] == SENDER
    assert entry["legal_basis"] == "consent" and entry["decision_id"] and entry["child_pseudonym"]
    assert entry["details"]["via"] == "mailbox" and entry["details"]["message_id"] == message["id"]
    assert entry["details"]["categories"] == ["concern-text", "identity", "school-situation"]
    # The sender's auditor sees who read what it sent, too.
    assert [e["id"] for e in await reads(client, auth, SENDER, delivered)] == [entry["id"]]


async def test_the_status_event_the_sender_fetches_is_audited_too(
    client: httpx.AsyncClient, auth: Auth, delivered: str, runtime: Runtime
) -> None:
    [message] = await mailbox(client, auth, RECEIVER)
    await ack(client, auth, RECEIVER, message["id"])  # the referral is now received: the sender is told
    async with httpx.AsyncClient() as http:
        await worker_for(runtime, http).run_until_idle()

    [told] = await mailbox(client, auth, SENDER)
    assert told["body"]["event"]["status"] == "received"
    [entry] = [e for e in await reads(client, auth, SENDER, delivered) if e["actor_organisation"] == SENDER]
    assert entry["details"]["message_kind"] == "status-event" and entry["details"]["side"] == "sender"
    assert entry["legal_basis"] == "consent"


async def test_the_receiver_sees_the_decision_that_disclosed_to_it_and_not_the_senders_deliberations(
    client: httpx.AsyncClient, auth: Auth, delivered: str, runtime: Runtime
) -> None:
    ask = {
        "to_organisation": RECEIVER,
        "child": {"personal_identity_number": CHILD},
        "purpose": "remiss",
        "data_categories": ["identity", "health"],
    }
    r = await client.post("/v1/sharing-decisions", json=ask, headers=auth(SENDER, "system"))  # a dry run
    assert r.status_code in (200, 201), r.text
    question = r.json()["id"]
    other = {**ask, "child": {"personal_identity_number": "20140101-0002"}}  # nothing covers this child: refused
    r = await client.post("/v1/sharing-decisions", json=other, headers=auth(SENDER, "system"))
    assert r.status_code in (200, 201), r.text

    def decisions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in items if e["action"] == "sharing-decision"]

    r = await client.get("/v1/audit?limit=200", headers=auth(SENDER, "auditor"))
    sender_view = decisions(r.json()["items"])
    assert question in {e["decision_id"] for e in sender_view}
    assert {e["outcome"] for e in sender_view} == {"0", "4"}, "the asker sees all of its own"

    r = await client.get("/v1/audit?limit=200", headers=auth(RECEIVER, "auditor"))
    receiver_view = decisions(r.json()["items"])
    assert receiver_view, "the decisions under which the referral reached it (at sending and at delivery)"
    for disclosure in receiver_view:
        assert disclosure["outcome"] == "0" and disclosure["details"]["dry_run"] is False
        assert disclosure["actor_organisation"] == SENDER and disclosure["legal_basis"] == "consent"
    assert question not in {e["decision_id"] for e in receiver_view}
    r = await client.get("/v1/audit?action=sharing-decision&outcome=4", headers=auth(RECEIVER, "auditor"))
    assert r.json()["items"] == []
    # The proof endpoint is as blind: the asker's deliberation does not exist for the receiver.
    await seal_all(runtime.engine, runtime.settings, checkpoint=True)
    hidden = next(e for e in sender_view if e["decision_id"] == question)
    r = await client.get(f"/v1/audit/{disclosure['id']}/proof", headers=auth(RECEIVER, "auditor"))
    assert r.status_code == 200, r.text
    r = await client.get(f"/v1/audit/{hidden['id']}/proof", headers=auth(RECEIVER, "auditor"))
    assert r.status_code == 404, r.text
    r = await client.get(f"/v1/audit/{hidden['id']}/proof", headers=auth(SENDER, "auditor"))
    assert r.status_code == 200, r.text
