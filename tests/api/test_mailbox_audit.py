"""A mailbox fetch hands out a referral's content: the audit trail shows it as a read, with its legal
basis, like reading the referral through ``GET /v1/referrals/{id}``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from tests.referrals.helpers import RECEIVER, SENDER, ack, mailbox, record_consent, sent, set_endpoint, worker_for

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
