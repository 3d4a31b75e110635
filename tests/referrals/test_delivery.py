"""Delivery that never loses a referral: a real webhook receiver on loopback, real worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from hub.adapters.webhook import verify_signature
from hub.db import referrals as db
from hub.devtools.demo import load_demo
from hub.runtime import Runtime
from hub.services.context import utcnow
from tests.loopback import Recorded, Recorder, Reply, free_port, serve
from tests.referrals.helpers import RECEIVER, SENDER, record_consent, referral, sent, set_endpoint, worker_for

SECRET = "dev-secret-demo-webhook"  # what dev mode resolves secret_ref "demo-webhook" to


class Receiver(Recorder):
    """A receiving case system: verifies the signature, stores each referral once per idempotency key."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        super().__init__(self._answer)
        self.status, self.delay = status, delay
        self.stored: dict[str, Any] = {}
        self.bad_signatures = 0

    def _answer(self, req: Recorded) -> Reply:
        try:
            verify_signature(SECRET, req.headers.get("hub-signature"), req.body, now=time.time())
        except ValueError:
            self.bad_signatures += 1
            return Reply(401)
        if self.status >= 300:
            return Reply(self.status, {"error": "scripted"})
        self.stored.setdefault(req.headers["idempotency-key"], req.json())
        return Reply(200, {"id": f"case-{len(self.stored)}"}, delay=self.delay)


@contextmanager
def serve_on(app: Any, port: int) -> Iterator[str]:
    """Serve on a given port, so a receiver can go away and come back at the same address."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture
async def county(client: httpx.AsyncClient, auth, runtime: Runtime) -> Runtime:  # type: ignore[no-untyped-def]
    async with runtime.sessions() as session:
        await load_demo(session)
    await set_endpoint(runtime, SENDER, "mailbox", {})
    await record_consent(client, auth)
    return runtime


async def outbox(runtime: Runtime, kind: str = "referral") -> list[db.OutboxRow]:
    async with runtime.sessions() as session:
        return [e for e in await db.outbox_entries(session) if e.kind == kind]


async def test_a_webhook_receiver_gets_a_signed_referral_and_the_sender_hears_it_was_received(
    client, auth, county
) -> None:
    receiver = Receiver()
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url + "/hub", "secret_ref": "demo-webhook"})
        rid = await sent(client, auth)
        async with httpx.AsyncClient() as http:
            await worker_for(county, http).run_until_idle()
    [request] = receiver.requests
    assert receiver.bad_signatures == 0
    assert request.headers["idempotency-key"].startswith(f"{SENDER}:")
    assert request.json()["referral"]["id"] == rid
    assert (await referral(client, auth, SENDER, rid))["status"] == "received"
    [delivery] = (await referral(client, auth, SENDER, rid))["deliveries"][:1]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 1
    # The closed loop: the sender (a mailbox organisation) is told, once, by the hub.
    r = await client.get("/v1/mailbox", headers=auth(SENDER, "system"))
    [told] = r.json()["items"]
    assert told["kind"] == "status-event"
    event = told["body"]["event"]
    assert (event["referral_id"], event["status"], event["previous_status"]) == (rid, "received", "requested")
    assert event["by_organisation"] is None and event["seq"] == 2


async def test_a_receiver_that_is_down_gets_it_when_it_returns(client, auth, county) -> None:
    port = free_port()
    await set_endpoint(
        county, RECEIVER, "webhook", {"url": f"http://127.0.0.1:{port}/hub", "secret_ref": "demo-webhook"}
    )
    rid = await sent(client, auth)
    async with httpx.AsyncClient() as http:
        # Its breaker may open meanwhile: then a probe finds it back, one probe interval after its return.
        worker = worker_for(
            county,
            http,
            delivery_backoff_base_seconds=0.01,
            delivery_backoff_max_seconds=0.02,
            delivery_breaker_probe_seconds=0.01,
        )
        for _ in range(3):  # down: connection refused, three times
            await worker.run_until_idle()
            await asyncio.sleep(0.03)
        [entry] = await outbox(county)
        assert entry.state == "retrying" and entry.attempts >= 3 and "connect" in (entry.last_error or "").lower()

        receiver = Receiver()
        with serve_on(receiver, port):
            await asyncio.sleep(0.03)
            await worker.run_until_idle()
    [entry] = await outbox(county)
    assert entry.state == "delivered" and len(receiver.stored) == 1
    assert (await referral(client, auth, SENDER, rid))["status"] == "received"


async def test_a_receiver_refusing_with_4xx_is_dead_lettered_not_retried_forever(client, auth, county) -> None:
    receiver = Receiver(status=422)
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, "secret_ref": "demo-webhook"})
        await sent(client, auth)
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http, delivery_backoff_base_seconds=0.001)
            await worker.run_until_idle()
            await asyncio.sleep(0.01)
            await worker.run_until_idle()
            [entry] = await outbox(county)
            assert entry.state == "dead-lettered" and entry.attempts == 1 and "422" in (entry.last_error or "")
            assert len(receiver.requests) == 1

            receiver.status = 200  # the receiver's system is fixed; an operator retries
            async with county.sessions() as session:
                assert len(await db.retry_dead(session, None, utcnow())) == 1
                await session.commit()
            await worker.run_until_idle()
    [entry] = await outbox(county)
    assert entry.state == "delivered"


async def test_a_stored_config_that_no_longer_validates_is_dead_lettered_naming_the_field(client, auth, county) -> None:
    # An endpoint row written before the adapter's Config changed (set_endpoint stores it unchecked): no
    # retry can fix it, so it is a configuration error at once, not eight attempts of an "adapter bug".
    receiver = Receiver()
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, "sekret_ref": "demo-webhook"})
        await sent(client, auth)
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http, delivery_backoff_base_seconds=0.001)
            for _ in range(3):
                await worker.run_until_idle()
                await asyncio.sleep(0.01)
    [entry] = await outbox(county)
    assert entry.state == "dead-lettered" and entry.attempts == 1
    assert "sekret_ref" in (entry.last_error or "") and not receiver.requests


async def test_5xx_is_retried_until_the_attempts_run_out(client, auth, county) -> None:
    receiver = Receiver(status=503)
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, "secret_ref": "demo-webhook"})
        await sent(client, auth)
        async with httpx.AsyncClient() as http:
            worker = worker_for(
                county,
                http,
                delivery_max_attempts=3,
                delivery_backoff_base_seconds=0.001,
                delivery_backoff_max_seconds=0.002,
            )
            for _ in range(6):
                await worker.run_until_idle()
                await asyncio.sleep(0.01)
    [entry] = await outbox(county)
    assert entry.state == "dead-lettered" and entry.attempts == 3 and len(receiver.requests) == 3


async def test_a_lost_receipt_is_redelivered_with_the_same_key(client, auth, county) -> None:
    """The worker crashed after the receiver stored the referral: it comes again, the receiver dedupes."""
    receiver = Receiver()
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, "secret_ref": "demo-webhook"})
        await sent(client, auth)
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http)
            await worker.run_until_idle()
            async with county.engine.begin() as conn:  # as if the receipt had never been recorded
                await conn.execute(
                    text("update outbox set state = 'queued', delivered_at = null where kind = 'referral'")
                )
                await conn.execute(text("update referral set status = 'requested', delivered_at = null"))
            await worker.run_until_idle()
    keys = [r.headers["idempotency-key"] for r in receiver.requests]
    assert len(keys) == 2 and len(set(keys)) == 1 and len(receiver.stored) == 1


async def test_a_worker_killed_mid_delivery_loses_nothing(client, auth, county, pg_url: str, data_dir: Path) -> None:
    """SIGKILL a real `hub worker` while the receiver is answering, start another: every referral is
    delivered, and the one in flight arrives twice with the same key, so in effect once."""
    receiver = Receiver(delay=0.5)
    count = 6
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, "secret_ref": "demo-webhook"})
        ids = [await sent(client, auth) for _ in range(count)]
        env = {
            **os.environ,
            "HUB_DATABASE_URL": pg_url,
            "HUB_DATA_DIR": str(data_dir),
            "HUB_DEV_MODE": "true",  # the test data's keys and the receiver's secret are the dev ones
            "HUB_WORKER_LEASE_SECONDS": "2",
            "HUB_WORKER_BATCH_SIZE": "2",
            "HUB_WORKER_POLL_INTERVAL_SECONDS": "0.1",
        }
        hub = str(Path(sys.executable).with_name("hub"))
        first = await asyncio.create_subprocess_exec(hub, "worker", env=env, stderr=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not receiver.requests and time.monotonic() < deadline:  # noqa: ASYNC110 (another thread fills it)
            await asyncio.sleep(0.01)
        assert receiver.requests, "the first worker never delivered"
        first.send_signal(signal.SIGKILL)  # mid-delivery: the receiver is still answering
        await first.wait()
        in_flight = {r.headers["idempotency-key"] for r in receiver.requests}

        second = await asyncio.create_subprocess_exec(hub, "worker", env=env, stderr=asyncio.subprocess.DEVNULL)
        try:
            while time.monotonic() < deadline:
                entries = await outbox(county)
                if len(entries) == count and all(e.state == "delivered" for e in entries):
                    break
                await asyncio.sleep(0.2)
        finally:
            second.send_signal(signal.SIGTERM)
            await second.wait()

    entries = await outbox(county)
    assert [e.state for e in entries] == ["delivered"] * count
    keys = [r.headers["idempotency-key"] for r in receiver.requests]
    assert len(receiver.stored) == count, "each referral stored once"
    assert len(keys) > count and in_flight & {k for k in keys if keys.count(k) > 1}, "in-flight ones came again"
    for rid in ids:
        assert (await referral(client, auth, SENDER, rid))["status"] == "received"


async def test_a_fhir_receiver_gets_a_task_and_its_status_changes_come_back(client, auth, county) -> None:
    from tests.adapters.fhir_server import FhirServer

    fhir = FhirServer()
    with serve(fhir) as url:
        await set_endpoint(county, RECEIVER, "fhir-r4", {"base_url": url})
        rid = await sent(client, auth)
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http)
            await worker.run_until_idle()
            [task] = fhir.resources("Task")
            assert fhir.invalid == [], "every resource sent is valid FHIR"
            assert (await referral(client, auth, SENDER, rid))["status"] == "received"

            task["status"] = "accepted"  # a clinician accepts it in BUP's journal system
            task["lastModified"] = utcnow().isoformat()
            assert await worker.poll_statuses() == 1
            assert await worker.poll_statuses() == 0, "a change is applied once"
            task["status"] = "in-progress"
            task["lastModified"] = utcnow().isoformat()
            await worker.poll_statuses()
            await worker.run_until_idle()
    row = await referral(client, auth, SENDER, rid)
    assert row["status"] == "in-progress"
    assert [e["to_status"] for e in row["events"]] == ["requested", "received", "accepted", "in-progress"]
    assert row["events"][2]["by_organisation"] == RECEIVER
    from tests.referrals.helpers import mailbox

    told = [m["body"]["event"]["status"] for m in await mailbox(client, auth, SENDER)]
    assert told == ["received", "accepted", "in-progress"]


async def test_the_tours_demo_receiver_prints_what_arrives_and_refuses_forgeries(client, auth, county) -> None:
    from hub.devtools.demo_receiver import receiver_app

    lines: list[str] = []
    with serve(receiver_app(SECRET, echo=lines.append)) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url + "/bup", "secret_ref": "demo-webhook"})
        rid = await sent(client, auth)
        async with httpx.AsyncClient() as http:
            await worker_for(county, http).run_until_idle()
            forged = await http.post(url + "/bup", content=b"{}", headers={"Hub-Signature": "t=1,v1=00"})
    assert forged.status_code == 401
    assert any(rid in line and "remiss" in line and "/v1/referrals/" in line for line in lines), lines
