"""The outbox worker: claims due deliveries, hands each message to the receiver's adapter and records the
outcome. Any number of workers can run against one database.

Leases are short (``worker_lease_seconds``, 15 s by default) so that a crashed worker's entries come back
soon; a heartbeat extends the leases of the entries a worker is still delivering every third of a lease,
so a slow receiver does not lose a live worker its lease. A worker told to stop (SIGTERM, SIGINT) starts
nothing new, finishes what it has in flight, and gives back what it claimed but had not started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
import random
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from hub.adapters.addresses import pinned_transport
from hub.adapters.base import Adapter, AdapterContext, DeliveryError, PermanentDeliveryError
from hub.adapters.registry import UnknownAdapter, adapter_class
from hub.config import Settings
from hub.database_availability import is_database_unavailable
from hub.db import referrals as db
from hub.db.uow import UnitOfWork
from hub.domain.referrals import received_from
from hub.runtime import Runtime
from hub.services import referrals as ref
from hub.services import registry
from hub.services.context import utcnow
from hub.services.delivery import messages, outcomes, polling
from hub.services.delivery.breaker import Breakers
from hub.services.delivery.mailbox_store import MailboxStore
from hub.services.keys import adapter_secret_resolver

log = logging.getLogger("hub.delivery")


@dataclass
class Worker:
    runtime: Runtime
    http: httpx.AsyncClient
    rng: random.Random = field(default_factory=random.Random)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _adapters: dict[tuple[str, str], Adapter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._in_flight = asyncio.Semaphore(self.settings.worker_concurrency)
        self._held: dict[uuid.UUID, int] = {}  # entries claimed and not yet recorded: id → attempt (fence)
        self.breakers = Breakers(self.settings, self.rng)
        self._database_away = False  # set by a round the database's absence stopped (run_forever)

    @functools.cached_property
    def _received_from(self) -> list[str]:
        """The statuses a receipt moves to received: the domain's rule (``Referral.receipt``)."""
        return received_from(ref.lifecycle(self.runtime.vocabulary))

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    async def run_once(self) -> int:
        """Claim one batch (and the probes due) and deliver it; returns how many entries were handled."""
        settings = self.settings
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            claimed = await db.claim_due(
                uow.session,
                now=utcnow(),
                lease_seconds=settings.worker_lease_seconds,
                limit=settings.worker_batch_size,
                # A probe's breaker stays leased as long as a delivery can take, even without heartbeats.
                probe_lease_seconds=settings.worker_lease_seconds + settings.delivery_timeout_seconds,
            )
            await uow.commit()
            if not claimed:
                return 0
            # What every message of the batch needs, read once for the batch (not per entry).
            async with uow.statement() as connection:
                batch = await db.batch_facts(connection, claimed)
        self.breakers.saw(batch.troubled)
        self._held.update((c.entry.id, c.entry.attempts) for c in claimed)
        unstarted: list[db.Claimed] = []
        # Ended by an event, not cancelled: a cancellation inside its statement would hand the pool a
        # connection with an operation still in flight ("another operation is in progress" for the next user).
        batch_done = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(batch_done))
        try:
            await asyncio.gather(*(self._limited(c, batch, unstarted) for c in claimed))
        finally:
            batch_done.set()
            await heartbeat
        if unstarted:
            await self._release(unstarted)
        return len(claimed)

    async def _limited(self, claimed: db.Claimed, batch: db.BatchFacts, unstarted: list[db.Claimed]) -> None:
        async with self._in_flight:
            if self.stop.is_set():  # stopping: nothing new starts; the entry goes back to the queue
                unstarted.append(claimed)
                return
            try:
                await self._handle(claimed, batch)
            finally:
                self._held.pop(claimed.entry.id, None)

    async def _heartbeat(self, batch_done: asyncio.Event) -> None:
        """Every third of a lease, the leases of what this worker still delivers run on, until the batch is done."""
        every = self.settings.worker_lease_seconds / 3
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch_done.wait(), timeout=every)
                return
            held = list(self._held.items())
            if not held:
                continue
            try:
                async with UnitOfWork.of(self.runtime.sessions) as uow:
                    await db.extend_leases(
                        uow.session, held, now=utcnow(), lease_seconds=self.settings.worker_lease_seconds
                    )
                    await uow.commit()
            except Exception as exc:  # the database is away: the leases may lapse, the entries come back
                log.warning("heartbeat failed", extra={"error_class": type(exc).__name__})

    async def _release(self, unstarted: list[db.Claimed]) -> None:
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            await db.release(uow.session, [(c.entry.id, c.entry.attempts) for c in unstarted])
            await uow.commit()
        for c in unstarted:
            self._held.pop(c.entry.id, None)
        log.info("stopping: claimed entries given back", extra={"count": len(unstarted)})

    async def run_until_idle(self, *, max_rounds: int = 1000) -> int:
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            total += handled
            if not handled:
                break
        return total

    async def run_forever(self) -> None:
        """Deliver until ``stop`` is set; the round in progress finishes (see the module docstring)."""
        last_purge = last_poll = 0.0
        away = 0  # rounds in a row the database was unavailable
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            self._database_away = False
            try:
                handled = await self.run_once()
                if loop.time() - last_poll > self.settings.status_poll_interval_seconds:
                    last_poll = loop.time()
                    await self.poll_statuses()
                if loop.time() - last_purge > 3600:
                    await self.purge()
                    last_purge = loop.time()
            except Exception as exc:  # keep the worker alive; the entry's lease brings it back
                handled = 0
                if is_database_unavailable(exc):
                    self._database_away = True
                else:
                    log.error("worker round failed", extra={"error_class": type(exc).__name__})
            away = self._note_outage(away)
            if not handled or away:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=self._pause(away))

    def _note_outage(self, away: int) -> int:
        """One warning when the database goes away and one line when it is back, not one per round."""
        if self._database_away:
            if not away:
                log.warning("database unavailable: deliveries wait for it")
            return away + 1
        if away:
            log.info("database available again: deliveries resume", extra={"rounds_waited": away})
        return 0

    def _pause(self, away: int) -> float:
        """The poll interval; while the database is away, doubling each round up to 30 s."""
        poll = self.settings.worker_poll_interval_seconds
        return poll if not away else min(30.0, poll * 2 ** min(away, 16))

    async def poll_statuses(self) -> int:
        return await polling.poll_statuses(self.runtime, self._adapter)

    async def purge(self) -> int:
        """The hourly housekeeping: payloads and plan content past their retention, then the flow rollups'
        past slots folded, in a transaction of its own: a failure there never holds up the purge."""
        purged = await polling.purge(self.runtime)
        try:
            await polling.fold_flow_slots(self.runtime)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise
            log.error("folding the flow rollup slots failed", extra={"error_class": type(exc).__name__})
        return purged

    # --- one entry -------------------------------------------------------------------------------------------

    async def _handle(self, claimed: db.Claimed, batch: db.BatchFacts) -> None:
        try:
            await self._deliver(claimed, batch)
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            # Not the receiver's fault, and nothing can be recorded now: the lease lapses and the entry comes
            # back once the database does, this attempt not counted (a message already handed over goes
            # again with the same idempotency key).
            self._database_away = True

    async def _deliver(self, claimed: db.Claimed, batch: db.BatchFacts) -> None:
        entry, checked = claimed.entry, db.Checked()
        try:
            built = await messages.build(self.runtime, claimed, batch)
            if built is None:
                return
            checked = built.checked
            adapter = self._adapter_for(entry.recipient_organisation, batch.endpoints.get(entry.recipient_organisation))
            receipt = await adapter.deliver(built.message)
        except PermanentDeliveryError as exc:
            await self._failed(claimed, exc, permanent=True, checked=checked)
        except DeliveryError as exc:
            await self._failed(claimed, exc, permanent=False, checked=checked)
        except Exception as exc:  # an adapter bug must not lose the entry: retry it like a failure
            if is_database_unavailable(exc):
                raise
            log.error("adapter raised", extra={"error_class": type(exc).__name__, "outbox_id": str(entry.id)})
            failure = DeliveryError(f"adapter error: {type(exc).__name__}")
            await self._failed(claimed, failure, permanent=False, checked=checked)
        else:
            await outcomes.delivered(
                self.runtime,
                self.breakers,
                claimed,
                adapter.name,
                receipt,
                received_from=self._received_from,
                checked=checked,
            )

    async def _failed(self, claimed: db.Claimed, exc: DeliveryError, *, permanent: bool, checked: db.Checked) -> None:
        await outcomes.failed(
            self.runtime, self.breakers, claimed, exc, permanent=permanent, checked=checked, rng=self.rng
        )

    async def _adapter(self, organisation_id: str) -> Adapter:
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            endpoint = await registry.active_endpoint(uow.session, organisation_id)
        return self._adapter_for(organisation_id, endpoint)

    def _adapter_for(self, organisation_id: str, endpoint: tuple[str, dict[str, Any]] | None) -> Adapter:
        """The adapter of the organisation's active endpoint (``endpoint``: as ``registry.active_endpoint``)."""
        if endpoint is None:
            raise DeliveryError(f"organisation {organisation_id} has no active endpoint in the registry")
        name, config = endpoint
        cache_key = (organisation_id, f"{name}:{sorted(config.items())!r}")
        if cache_key not in self._adapters:
            try:
                cls = adapter_class(name)
            except UnknownAdapter:
                raise DeliveryError(f"adapter {name!r} is not installed") from None
            context = AdapterContext(
                hub_url=self.settings.public_url,
                secret=adapter_secret_resolver(self.settings),
                http=self.http,
                timeout_seconds=self.settings.delivery_timeout_seconds,
                extras={"mailbox": MailboxStore(self.runtime)},
            )
            self._adapters[cache_key] = cls.configured(config, context)
        return self._adapters[cache_key]


def _absent_sniffio_fails_fast() -> None:
    """httpcore tries ``import sniffio`` on every lock and shielded close it makes, four times per request
    (``httpcore._synchronization.current_async_library``). Without sniffio installed each of those failed
    imports searches ``sys.path`` again, about 80 µs: a seventh of a worker's time. Recording the absence
    once makes the import fail at once instead, exactly as before otherwise. (Installing sniffio, which
    httpcore prefers, makes this a no-op.)"""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # "import sniffio" raises ImportError


@asynccontextmanager
async def running_worker(runtime: Runtime) -> AsyncIterator[Worker]:
    """A worker delivering in the background until the block ends (used by `hub serve` and `hub worker`):
    then it stops gracefully (the module docstring)."""
    _absent_sniffio_fails_fast()
    # worker_concurrency deliveries run at once: keep that many connections alive between them, and no
    # more. httpcore asks every pooled connection whether it has expired (a getpeername() each, through
    # anyio) on every request: with a connection per entry of a batch of 100, that was a quarter of a
    # worker's CPU (bench/RESULTS.md, delivery).
    in_flight = runtime.settings.worker_concurrency
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    # Connections go only where the address policy allows, to the address it checked (DNS rebinding).
    transport = pinned_transport(runtime.address_policy, limits=limits)
    async with httpx.AsyncClient(timeout=runtime.settings.delivery_timeout_seconds, transport=transport) as http:
        worker = Worker(runtime, http)
        task = asyncio.create_task(worker.run_forever())
        try:
            yield worker
        finally:
            worker.stop.set()
            await task
            log.info("worker stopped")
