"""Delivery over real outages: real webhook receivers on loopback (the sender's too), real PostgreSQL, and
real `hub worker` / `hub serve` processes stopped with real signals. Outages are made short by settings
(backoff in milliseconds, a horizon in fractions of a second), never by waiting real minutes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from hub.runtime import Runtime
from tests.loopback import Recorded, Recorder, Reply, free_port, serve
from tests.referrals.helpers import RECEIVER, SENDER, referral, sent, set_endpoint, worker_for
from tests.referrals.test_delivery import county as county  # a fixture
from tests.referrals.test_delivery import outbox, serve_on

WEBHOOK = {"secret_ref": "demo-webhook"}
FAST = {"delivery_backoff_base_seconds": 0.01, "delivery_backoff_max_seconds": 0.02}


class Scripted(Recorder):
    """A receiver whose answer can change while it runs (``status``), that answers after ``delay`` seconds,
    and that keeps one record per idempotency key and the most requests it had in flight at once."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        super().__init__(self._answer)
        self.status, self.delay = status, delay
        self.stored: dict[str, Any] = {}
        self.in_flight = self.most_in_flight = 0
        self._count = threading.Lock()

    def _answer(self, req: Recorded) -> Reply:
        status = self.status
        if status < 300:
            self.stored.setdefault(req.headers["idempotency-key"], req.json())
        return Reply(status, {"id": f"case-{len(self.stored)}"} if status < 300 else {"error": "scripted"})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        with self._count:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            await super().__call__(scope, receive, send)
        finally:
            with self._count:
                self.in_flight -= 1


async def until(condition: Any, *, deadline: float = 30.0, between: Any = None) -> None:
    """Poll ``condition`` (a callable, sync or async) until it holds, doing ``between`` (an async
    callable) and a short sleep in between; fail at the deadline."""
    end = time.monotonic() + deadline
    while not await _value(condition()):
        assert time.monotonic() < end, "condition not reached before the deadline"
        if between is not None:
            await between()
        await asyncio.sleep(0.02)


async def _value(result: Any) -> Any:
    return await result if asyncio.iscoroutine(result) else result


async def scalar(runtime: Runtime, sql: str, **params: Any) -> Any:
    async with runtime.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def breaker_open(runtime: Runtime) -> bool:
    return bool(await scalar(runtime, "select count(*) from delivery_breaker where opened_at is not null"))


async def test_a_receiver_down_longer_than_the_old_horizon_loses_nothing(client, auth, county) -> None:
    """The old horizon was 8 attempts (minutes). Here the receiver stays down while entries are tried
    more often than that, and nothing is dead-lettered; /metrics shows the outage; when the receiver
    comes back every referral is delivered once."""
    port = free_port()
    await set_endpoint(county, RECEIVER, "webhook", {"url": f"http://127.0.0.1:{port}/hub", **WEBHOOK})
    ids = [await sent(client, auth) for _ in range(3)]
    async with httpx.AsyncClient() as http:
        worker = worker_for(county, http, **FAST, delivery_breaker_threshold=3, delivery_breaker_probe_seconds=0.02)

        async def tried_past_the_old_horizon() -> bool:
            return max(e.attempts for e in await outbox(county)) > 8

        await until(tried_past_the_old_horizon, between=worker.run_until_idle)
        assert {e.state for e in await outbox(county)} <= {"queued", "retrying"}, "nothing given up"
        metrics = (await client.get("/metrics")).text
        assert f'hub_delivery_breaker_open{{recipient="{RECEIVER}"}} 1.0' in metrics
        assert f'hub_outbox_queued{{recipient="{RECEIVER}"}} 3.0' in metrics
        assert f'hub_outbox_dead_lettered{{recipient="{RECEIVER}"}} 0.0' in metrics
        assert f'hub_outbox_oldest_queued_age_seconds{{recipient="{RECEIVER}"}} 0.0' not in metrics

        receiver = Scripted()
        with serve_on(receiver, port):

            async def all_delivered() -> bool:
                return all(e.state == "delivered" for e in await outbox(county))

            await until(all_delivered, between=worker.run_until_idle)
    assert len(receiver.stored) == 3
    for rid in ids:
        row = await referral(client, auth, SENDER, rid)
        assert (row["status"], row["delivery_state"]) == ("received", "delivered")
        assert "delivery-failed" not in [e["type"] for e in row["events"]]
    assert not await breaker_open(county)
    assert f'hub_delivery_breaker_open{{recipient="{RECEIVER}"}}' not in (await client.get("/metrics")).text


async def test_while_a_receiver_is_down_workers_probe_it_one_message_at_a_time_and_drain_when_it_is_back(
    client, auth, county
) -> None:
    receiver = Scripted(status=503, delay=0.02)
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, **WEBHOOK})
        count = 8
        for _ in range(count):
            await sent(client, auth)
        async with httpx.AsyncClient() as http:
            tuned = {**FAST, "delivery_breaker_threshold": 2, "delivery_breaker_probe_seconds": 0.02}
            first, second = worker_for(county, http, **tuned), worker_for(county, http, **tuned)

            async def both() -> None:  # two workers at once: the breaker is shared through the database
                await asyncio.gather(first.run_once(), second.run_once())

            await until(lambda: breaker_open(county), between=both)
            before, receiver.most_in_flight = len(receiver.requests), 0
            rounds = 20
            for _ in range(rounds):
                await both()
                await asyncio.sleep(0.02)
            probes = len(receiver.requests) - before
            assert 1 <= probes <= rounds, "one probe at a time, not every queued message"
            assert receiver.most_in_flight == 1
            assert {e.state for e in await outbox(county)} == {"retrying"}

            receiver.status = 200  # back

            async def drained() -> bool:
                return all(e.state == "delivered" for e in await outbox(county))

            await until(drained, between=both)
    assert len(receiver.stored) == count
    assert not await scalar(county, "select count(*) from delivery_breaker")


async def test_the_sender_is_told_through_its_own_adapter_when_delivery_is_given_up(
    client, auth, county, pg_url: str, data_dir: Path
) -> None:
    """The receiver refuses for good: dead-lettered, the sender's own webhook server gets a
    ``delivery-failed`` event, the API says so; ``hub outbox retry`` queues it again and the state follows."""
    bup, school = Scripted(status=422), Scripted()
    with serve(bup) as bup_url, serve(school) as school_url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": bup_url, **WEBHOOK})
        await set_endpoint(county, SENDER, "webhook", {"url": school_url, **WEBHOOK})
        rid = await sent(client, auth)
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http)
            await worker.run_until_idle()
            [told] = school.requests
            assert told.headers["hub-message-kind"] == "status-event"
            event = told.json()["event"]
            assert (event["referral_id"], event["type"], event["reason_code"]) == (
                rid,
                "delivery-failed",
                "receiver-refused",
            )
            assert event["by_organisation"] is None and event["status"] == "requested"
            row = await referral(client, auth, SENDER, rid)
            assert (row["status"], row["delivery_state"]) == ("requested", "dead-lettered")
            query = {"query": "{ referrals { ... on ReferralPage { items { id status deliveryState } } } }"}
            page = (await client.post("/graphql", json=query, headers=auth(SENDER, "system"))).json()
            assert page["data"]["referrals"]["items"] == [
                {"id": rid, "status": "requested", "deliveryState": "dead-lettered"}
            ]

            env = {**os.environ, "HUB_DATABASE_URL": pg_url, "HUB_DATA_DIR": str(data_dir), "HUB_DEV_MODE": "true"}
            retry = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("hub")), "outbox", "retry", "--all-dead", env=env
            )
            assert await retry.wait() == 0
            assert (await referral(client, auth, SENDER, rid))["delivery_state"] == "queued"
            bup.status = 200
            await worker.run_until_idle()
    row = await referral(client, auth, SENDER, rid)
    assert (row["status"], row["delivery_state"]) == ("received", "delivered")
    assert len(bup.stored) == 1


async def test_past_the_retry_horizon_a_receiver_still_down_gets_nothing_and_the_sender_is_told(
    client, auth, county
) -> None:
    port = free_port()
    await set_endpoint(county, RECEIVER, "webhook", {"url": f"http://127.0.0.1:{port}/hub", **WEBHOOK})
    ids = {await sent(client, auth) for _ in range(2)}
    async with httpx.AsyncClient() as http:
        worker = worker_for(
            county,
            http,
            **FAST,
            delivery_breaker_threshold=1,
            delivery_breaker_probe_seconds=0.02,
            delivery_horizon_hours=0.5 / 3600,  # half a second
        )

        async def given_up() -> bool:
            return all(e.state == "dead-lettered" for e in await outbox(county))

        await until(given_up, between=worker.run_until_idle)
        await worker.run_until_idle()  # the sender's events (a mailbox organisation)
    r = await client.get("/v1/mailbox", headers=auth(SENDER, "system"))
    events = [m["body"]["event"] for m in r.json()["items"]]
    assert {e["referral_id"] for e in events} == ids
    assert {(e["type"], e["reason_code"]) for e in events} == {("delivery-failed", "receiver-unreachable")}


async def test_a_stale_worker_cannot_overwrite_the_outcome_of_the_worker_that_took_over(
    client, auth, county, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A stalls (its heartbeat does not run) while the receiver is slow; its lease runs out, worker
    B claims the entry again and delivers it. A's late failure must not turn B's delivery back."""
    receiver = Scripted(status=503, delay=3.0)  # A's request: slow, and it fails
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, **WEBHOOK})
        rid = await sent(client, auth)
        async with httpx.AsyncClient() as http:
            a = worker_for(county, http, worker_lease_seconds=0.2)
            b = worker_for(county, http, worker_lease_seconds=0.2)

            async def stalled(batch_done: asyncio.Event) -> None:  # extends nothing until the batch ends
                await batch_done.wait()

            monkeypatch.setattr(a, "_heartbeat", stalled)
            stale = asyncio.create_task(a.run_once())
            await until(lambda: receiver.in_flight > 0)  # A's request is at the receiver, still unanswered
            receiver.status, receiver.delay = 200, 0.0  # B's request succeeds

            async def b_delivered() -> bool:
                await b.run_once()
                return (await outbox(county))[0].state == "delivered"

            await until(b_delivered)
            with caplog.at_level(logging.WARNING, logger="hub.delivery"):
                await stale
    [entry] = await outbox(county)
    assert (entry.state, entry.attempts) == ("delivered", 2)
    assert any(r.getMessage() == "outcome refused: lease lost" for r in caplog.records)
    assert (await referral(client, auth, SENDER, rid))["status"] == "received"


async def test_a_heartbeat_keeps_the_lease_of_a_slow_delivery(client, auth, county) -> None:
    # More than two leases long. The lease is long enough that a machine busy with other work (a heartbeat
    # is due every third of it, one second here) does not let it lapse between two beats.
    receiver = Scripted(delay=7.0)
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, **WEBHOOK})
        await sent(client, auth)
        async with httpx.AsyncClient() as http:
            a = worker_for(county, http, worker_lease_seconds=3.0)
            b = worker_for(county, http, worker_lease_seconds=3.0)
            delivering = asyncio.create_task(a.run_once())
            await until(lambda: receiver.in_flight > 0)
            [claimed] = await outbox(county)
            leases = {claimed.lease_until}
            while not delivering.done():
                assert await b.run_once() == 0, "the entry stays with the worker delivering it"
                [entry] = await outbox(county)
                if entry.lease_until is not None:
                    leases.add(entry.lease_until)
                await asyncio.sleep(0.1)
    assert len(receiver.requests) == 1
    assert len(leases) >= 3, "the lease was extended while the delivery ran"
    [entry] = await outbox(county)
    assert (entry.state, entry.attempts) == ("delivered", 1)


async def test_retries_during_an_outage_record_one_decision_not_one_per_attempt(client, auth, county) -> None:
    """The send-time legal re-check runs on every attempt, but records a decision and its audit entry only
    when its outcome changes: K failed attempts and a delivery add one, not K + 1."""
    receiver = Scripted(status=503)
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, **WEBHOOK})
        await sent(client, auth)
        async with httpx.AsyncClient() as http:
            worker = worker_for(county, http, **FAST, delivery_breaker_threshold=100)

            async def tried(times: int) -> bool:
                return len(receiver.requests) >= times

            await until(lambda: tried(6), between=worker.run_until_idle)
            receiver.status = 200
            await until(lambda: bool(receiver.stored), between=worker.run_until_idle)
    attempts = len(receiver.requests)
    decisions = await scalar(county, "select count(*) from sharing_decision where requested_by = 'hub:delivery'")
    audited = await scalar(
        county,
        "select count(*) from audit_event where decision_id in "
        "(select id::text from sharing_decision where requested_by = 'hub:delivery')",
    )
    assert attempts >= 7 and (decisions, audited) == (1, 1)
    [entry] = await outbox(county)
    assert entry.state == "delivered"


def _hub_env(pg_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HUB_DATABASE_URL": pg_url,
        "HUB_DATA_DIR": str(data_dir),
        "HUB_DEV_MODE": "true",
        "HUB_WORKER_POLL_INTERVAL_SECONDS": "0.1",
        **extra,
    }


async def test_sigterm_stops_hub_worker_gracefully_with_exit_status_0(
    client, auth, county, pg_url: str, data_dir: Path
) -> None:
    """Stopped mid-delivery, a real `hub worker` finishes what is in flight, gives back what it claimed
    but had not started, and exits 0."""
    receiver = Scripted(delay=0.5)
    with serve(receiver) as url:
        await set_endpoint(county, RECEIVER, "webhook", {"url": url, **WEBHOOK})
        for _ in range(4):
            await sent(client, auth)
        env = _hub_env(pg_url, data_dir, HUB_WORKER_CONCURRENCY="1", HUB_WORKER_BATCH_SIZE="4")
        hub = str(Path(sys.executable).with_name("hub"))
        worker = await asyncio.create_subprocess_exec(hub, "worker", env=env, stderr=asyncio.subprocess.DEVNULL)
        await until(lambda: bool(receiver.requests))
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0
    entries = await outbox(county)
    assert all(e.lease_until is None for e in entries if e.state != "delivered"), "nothing left leased"
    assert [e.state for e in entries].count("delivered") == len(receiver.stored) >= 1, "in flight: finished"
    given_back = [e for e in entries if e.state == "queued"]
    assert given_back and all(e.attempts == 0 for e in given_back), "what had not started went back, uncounted"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_hub_serve_gracefully_with_exit_status_0(pg_url: str, data_dir: Path, stop) -> None:
    port = free_port()
    env = _hub_env(pg_url, data_dir, HUB_SERVE_RUNS_WORKER="true", HUB_APPLY_MIGRATIONS_ON_START="false")
    hub = str(Path(sys.executable).with_name("hub"))
    server = await asyncio.create_subprocess_exec(
        hub, "serve", "--port", str(port), env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient() as http:

            async def up() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(up, deadline=60)
        server.send_signal(stop)
        assert await asyncio.wait_for(server.wait(), 30) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
