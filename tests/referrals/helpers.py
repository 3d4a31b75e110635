"""Shared steps for referral tests: a demo county, a consent, a referral, a worker round, a mailbox."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from hub.runtime import Runtime
from hub.services.delivery import Worker

CHILD = "20150311-2383"
SENDER = "nora-elevhalsa"
RECEIVER = "region-bup"
NOW = datetime.now(UTC)

Auth = Callable[..., dict[str, str]]


async def set_endpoint(runtime: Runtime, organisation_id: str, adapter: str, config: dict[str, Any]) -> None:
    """Point an organisation's deliveries somewhere (the registry's admin API does the same, validated)."""
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("update endpoint set active = false where organisation_id = :o"), {"o": organisation_id}
        )
        await conn.execute(
            text("insert into endpoint (id, organisation_id, adapter, config) values (:id, :o, :a, cast(:c as jsonb))"),
            {"id": uuid.uuid4(), "o": organisation_id, "a": adapter, "c": json.dumps(config)},
        )


def consent_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "child": {"personal_identity_number": CHILD},
        "guardian_count": 2,
        "grantors": [{"role": "guardian", "reference": "vh1"}, {"role": "guardian", "reference": "vh2"}],
        "data_categories": ["identity", "school-situation", "wellbeing-assessment", "concern-text"],
        "from_parties": {"organisation_ids": [SENDER]},
        "to_parties": {"organisation_types": ["bup"]},
        "purposes": ["remiss"],
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=180)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "elevhalsa-journal:2026/1142",
    }
    body.update(over)
    return body


async def record_consent(client: httpx.AsyncClient, auth: Auth, **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/consents", json=consent_body(**over), headers=auth(SENDER, "system"))
    assert r.status_code == 201, r.text
    return r.json()


def referral_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "remiss",
        "target": {"organisation_id": RECEIVER},
        "child": {"personal_identity_number": CHILD},
        "concern": {
            "dimensions": ["healthy"],
            "local_codes": {"system": "variant-behovskompassen", "codes": ["trygghet"]},
            "trappan_step": 2,
            "text": "Oro för sömn och skolfrånvaro sedan i höstas.",
        },
        "data_categories": ["identity", "school-situation", "concern-text", "health"],
        "information": {
            "school-situation": {"attendance_percent": 62, "class": "4B"},
            "health": {"note": "Skolsköterskan: huvudvärk"},
        },
    }
    body.update(over)
    return body


async def send(
    client: httpx.AsyncClient, auth: Auth, *, key: str | None = None, org: str = SENDER, **over: Any
) -> httpx.Response:
    headers = {**auth(org, "system"), "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post("/v1/referrals", json=referral_body(**over), headers=headers)


async def sent(client: httpx.AsyncClient, auth: Auth, **over: Any) -> str:
    r = await send(client, auth, **over)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def worker_for(runtime: Runtime, http: httpx.AsyncClient, **settings: Any) -> Worker:
    """A worker with its own settings (e.g. tiny backoff) on the test database."""
    tuned = dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=settings))
    return Worker(tuned, http)


async def mailbox(client: httpx.AsyncClient, auth: Auth, org: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/mailbox", headers=auth(org, "system"))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def ack(client: httpx.AsyncClient, auth: Auth, org: str, message_id: str) -> None:
    r = await client.post(f"/v1/mailbox/{message_id}/ack", headers=auth(org, "system"))
    assert r.status_code == 204, r.text


async def event(client: httpx.AsyncClient, auth: Auth, org: str, referral_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"/v1/referrals/{referral_id}/events", json=body, headers=auth(org, "system"))


async def referral(client: httpx.AsyncClient, auth: Auth, org: str, referral_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/referrals/{referral_id}", headers=auth(org, "system"))
    assert r.status_code == 200, r.text
    return dict(r.json())
