"""The outbox worker: claims due deliveries, re-checks the legal basis at send time, hands each message
to the receiver's adapter and records the outcome. Any number of workers can run against one database.

At least once: an entry is leased (not locked) while its adapter runs, so a worker that dies mid-delivery
loses the lease and another sends the message again, with the same idempotency key, for the receiver to
dedupe. Nothing is delivered that the decision engine does not permit at the moment of sending.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import random
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from hub.adapters.addresses import pinned_transport
from hub.adapters.base import (
    Adapter,
    AdapterContext,
    DeliveryError,
    InboundStatus,
    Message,
    OpenReferral,
    PermanentDeliveryError,
    Receipt,
)
from hub.adapters.registry import UnknownAdapter, adapter_class
from hub.db import referrals as db
from hub.db.uow import UnitOfWork
from hub.domain.errors import HubError
from hub.domain.principal import Principal, Role
from hub.domain.referrals import received_from, strip_to
from hub.runtime import Runtime
from hub.services import referrals as ref
from hub.services import registry
from hub.services.context import Actor, utcnow
from hub.services.keys import adapter_secret_resolver
from hub.services.sharing import ShareQuestion, decide_share

log = logging.getLogger("hub.delivery")


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^n)]."""
    return rng.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


@dataclass
class Worker:
    runtime: Runtime
    http: httpx.AsyncClient
    rng: random.Random = field(default_factory=random.Random)
    _adapters: dict[tuple[str, str], Adapter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._in_flight = asyncio.Semaphore(self.settings.worker_concurrency)

    @functools.cached_property
    def _received_from(self) -> list[str]:
        """The statuses a receipt moves to received: the domain's rule (``Referral.receipt``)."""
        return received_from(ref.lifecycle(self.runtime.vocabulary))

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return self.runtime.settings

    async def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many entries were handled."""
        now = utcnow()
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            claimed = await db.claim_due(
                uow.session,
                now=now,
                lease_seconds=self.settings.worker_lease_seconds,
                limit=self.settings.worker_batch_size,
            )
            await uow.commit()
            if not claimed:
                return 0
            # What every message of the batch needs, read once for the batch (not per entry).
            async with uow.statement() as connection:
                batch = await db.batch_facts(connection, claimed)
        await asyncio.gather(*(self._limited(entry, batch) for entry in claimed))
        return len(claimed)

    async def _limited(self, entry: db.OutboxRow, batch: db.BatchFacts) -> None:
        async with self._in_flight:
            await self._handle(entry, batch)

    async def run_until_idle(self, *, max_rounds: int = 1000) -> int:
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            total += handled
            if not handled:
                break
        return total

    async def run_forever(self, stop: asyncio.Event) -> None:
        last_purge = last_poll = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                handled = await self.run_once()
                if loop.time() - last_poll > self.settings.status_poll_interval_seconds:
                    last_poll = loop.time()
                    await self.poll_statuses()
                if loop.time() - last_purge > 3600:
                    await self.purge()
                    last_purge = loop.time()
            except Exception as exc:  # keep the worker alive; the entry's lease brings it back
                log.error("worker round failed", extra={"error_class": type(exc).__name__})
                handled = 0
            if not handled:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.worker_poll_interval_seconds)
                except TimeoutError:
                    pass

    async def poll_statuses(self) -> int:
        """Ask every adapter that can poll what its receiver did to the referrals it holds, and apply each
        change as the receiver's own event (so the lifecycle rules, the audit and the closed loop hold)."""
        terminal = sorted(ref.lifecycle(self.runtime.vocabulary).terminal)
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            endpoints = await db.active_endpoints(uow.session)
        applied = 0
        for organisation_id, name, _config in endpoints:
            try:
                if adapter_class(name).poll is Adapter.poll:
                    continue
                adapter = await self._adapter(organisation_id)
            except (UnknownAdapter, DeliveryError):
                continue
            async with UnitOfWork.of(self.runtime.sessions) as uow:
                open_ = await db.open_received(uow.session, organisation_id, terminal)
            if not open_:
                continue
            try:
                changes = await adapter.poll([OpenReferral(str(i), remote, status) for i, remote, status in open_])
            except DeliveryError as exc:
                log.warning("poll failed", extra={"adapter": name, "error_class": type(exc).__name__})
                continue
            for change in changes:
                applied += await self._apply(organisation_id, name, change)
        return applied

    async def _apply(self, organisation_id: str, adapter: str, change: InboundStatus) -> int:
        receiver = Actor(
            Principal(subject=f"hub:poll:{adapter}", organisation_id=organisation_id, roles=frozenset({Role.SYSTEM}))
        )
        feedback = (
            (change.reason_text or "Completed in the receiver's system.") if change.status == "completed" else None
        )
        try:
            await ref.record_event(
                actor=receiver,
                referral_id=change.referral_id,
                draft=ref.EventDraft(
                    type="status",
                    status=change.status,
                    reason_code=change.reason_code,
                    reason_text=change.reason_text if change.status != "completed" else None,
                    feedback=feedback,
                ),
                idempotency_key=f"poll:{change.status}:{change.occurred_at.isoformat()}",
                runtime=self.runtime,
            )
        except HubError as exc:
            # E.g. the receiver jumped over a status the lifecycle requires: kept for a person to look at.
            log.warning("polled status not applied", extra={"adapter": adapter, "error_class": type(exc).__name__})
            return 0
        return 1

    async def purge(self) -> int:
        now = utcnow()
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            purged = await db.purge_payloads(
                uow.session,
                ref.lifecycle(self.runtime.vocabulary).purge(now, timedelta(days=self.settings.payload_retention_days)),
            )
            await uow.commit()
        if purged:
            log.info("payloads purged", extra={"count": purged})
        return purged

    # --- one entry -------------------------------------------------------------------------------------------

    async def _handle(self, entry: db.OutboxRow, batch: db.BatchFacts) -> None:
        try:
            message = await self._message(entry, batch)
            if message is None:
                return
            adapter = self._adapter_for(entry.recipient_organisation, batch.endpoints.get(entry.recipient_organisation))
            receipt = await adapter.deliver(message)
        except PermanentDeliveryError as exc:
            await self._failed(entry, exc, permanent=True)
        except DeliveryError as exc:
            await self._failed(entry, exc, permanent=False)
        except Exception as exc:  # an adapter bug must not lose the entry: retry it like a failure
            log.error("adapter raised", extra={"error_class": type(exc).__name__, "outbox_id": str(entry.id)})
            await self._failed(entry, DeliveryError(f"adapter error: {type(exc).__name__}"), permanent=False)
        else:
            await self._delivered(entry, adapter.name, receipt)

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

    async def _message(self, entry: db.OutboxRow, batch: db.BatchFacts) -> Message | None:
        """The message to send, built now; None when nothing may be sent any more (entry closed here)."""
        row = batch.referrals.get(entry.referral_id)
        assert row is not None
        if entry.kind == "status-event":
            assert entry.event_id is not None
            event = batch.events.get(entry.event_id)
            assert event is not None
            return Message(
                kind="status-event",
                message_id=str(entry.id),
                idempotency_key=entry.idempotency_key,
                referral_id=str(row.id),
                sender_organisation=event.by_organisation or "hub",
                recipient_organisation=entry.recipient_organisation,
                body={"event": _event_body(event, ref.event_texts(event, self.runtime.cipher))},
                created_at=entry.created_at,
            )
        if not ref.aggregate(row, self.runtime.vocabulary).deliverable:
            async with UnitOfWork.of(self.runtime.sessions) as uow:
                await db.finish(
                    uow.session,
                    entry.id,
                    state="abandoned",
                    last_error=f"referral is {row.status}",
                    updated_at=utcnow(),
                )
                await uow.commit()
            return None
        document = ref.document_for(row, "sender", self.runtime.cipher)
        assert document is not None
        permitted = await self._recheck(row, document)
        if permitted is None:
            return None
        body = strip_to(document, permitted)
        organisations = batch.organisations
        service = batch.services.get(row.service_id) if row.service_id else None
        return Message(
            kind="referral",
            message_id=str(entry.id),
            idempotency_key=entry.idempotency_key,
            referral_id=str(row.id),
            sender_organisation=row.sender_organisation,
            recipient_organisation=row.recipient_organisation,
            body={
                "referral": {
                    "id": str(row.id),
                    "kind": row.kind,
                    "status": row.status,
                    "created_at": row.created_at.isoformat(),
                    "sender": organisations[row.sender_organisation],
                    "recipient": organisations[row.recipient_organisation],
                    "service": service,
                    **body,
                    "legal_basis": {
                        "basis": row.legal_basis,
                        "reference": row.basis_reference,
                        "decision_id": str(row.decision_id),
                    },
                    "permitted_categories": permitted,
                    "reply_to": f"{self.settings.public_url}/v1/referrals/{row.id}/events",
                }
            },
            created_at=entry.created_at,
        )

    async def _recheck(self, row: db.ReferralRow, document: dict[str, Any]) -> list[str] | None:
        """The legal basis at send time. Withdrawn or expired → the referral fails and the sender is told.

        The decision is recorded with its audit entry by a statement that commits by itself
        (``decide_share``'s one commit), so the sender's audit chain is locked only while that statement
        runs, not until a later commit."""
        hub_actor = Actor(
            Principal(subject="hub:delivery", organisation_id=row.sender_organisation, roles=frozenset({Role.SYSTEM})),
            now=self.runtime.clock(),  # the law and policy in force when the hub delivers
        )
        recorded = await decide_share(
            actor=hub_actor,
            question=ShareQuestion(
                to_organisation=row.recipient_organisation,
                personal_identity_number=document["child"]["personal_identity_number"],
                purpose=row.kind,
                data_categories=row.permitted_categories,
                legal_basis=row.legal_basis,
                basis_reference=row.basis_reference,
            ),
            runtime=self.runtime,
            dry_run=False,
        )
        permitted = sorted(set(row.permitted_categories) & set(recorded.decision.permitted_categories))
        if recorded.decision.allowed and permitted:
            return permitted
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            locked = await db.referral(uow.session, row.id, lock=True)
            assert locked is not None
            reasons = "; ".join(r.en for r in recorded.decision.reasons)
            failed = ref.aggregate(locked, self.runtime.vocabulary).delivery_failed(
                f"Not delivered: no legal basis at send time. {reasons}"
            )
            if failed is not None:
                await ref.hub_transition(uow.session, locked, failed, now=hub_actor.now, cipher=self.runtime.cipher)
            await uow.commit()
        return None

    async def _delivered(self, entry: db.OutboxRow, adapter: str, receipt: Receipt) -> None:
        # One statement, committing by itself: the entry delivered and, for a referral, the referral
        # delivered and (acknowledged) received, with that event queued for the sender.
        async with UnitOfWork.of(self.runtime.sessions) as uow, uow.statement() as connection:
            await db.record_delivered(
                connection,
                entry,
                adapter=adapter,
                remote_id=receipt.remote_id,
                received_from=self._received_from if receipt.acknowledged else (),
                now=utcnow(),
            )
        log.info("delivered", extra={"outbox_id": str(entry.id), "adapter": adapter, "attempt": entry.attempts})

    async def _failed(self, entry: db.OutboxRow, exc: DeliveryError, *, permanent: bool) -> None:
        now = utcnow()
        dead = permanent or entry.attempts >= self.settings.delivery_max_attempts
        delay = exc.retry_after_seconds or backoff_seconds(
            entry.attempts,
            base=self.settings.delivery_backoff_base_seconds,
            cap=self.settings.delivery_backoff_max_seconds,
            rng=self.rng,
        )
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            await db.finish(
                uow.session,
                entry.id,
                state="dead-lettered" if dead else "retrying",
                next_attempt_at=now + timedelta(seconds=delay),
                last_error=exc.detail[:500],
                updated_at=now,
            )
            await uow.commit()
        log.warning(
            "dead-lettered" if dead else "delivery failed, will retry",
            extra={"outbox_id": str(entry.id), "attempt": entry.attempts},
        )


def _event_body(event: db.EventRow, texts: dict[str, str] | Any) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "referral_id": str(event.referral_id),
        "seq": event.seq,  # order of events per referral: deliveries may arrive out of order
        "type": event.type,
        "status": event.to_status,
        "previous_status": event.from_status,
        "by_organisation": event.by_organisation,
        "occurred_at": event.occurred_at.isoformat(),
        "reason_code": event.reason_code,
        "reason_text": texts.get("reason_text"),
        "suggested_organisation": event.suggested_organisation,
        "suggested_service": event.suggested_service,
        "feedback": texts.get("feedback"),
    }


class MailboxStore:
    """Where the mailbox adapter leaves messages for organisations that fetch them (``GET /v1/mailbox``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def put(self, message: Message) -> str:
        now = utcnow()
        body, key_id = self.runtime.cipher.encrypt(
            {"kind": message.kind, "idempotency_key": message.idempotency_key, **message.body},
            bound_to=f"mailbox:{message.message_id}",
        )
        async with UnitOfWork.of(self.runtime.sessions) as uow:
            stored = await db.mailbox_put(
                uow.session,
                organisation_id=message.recipient_organisation,
                outbox_id=uuid.UUID(message.message_id),
                kind=message.kind,
                body=body,
                key_id=key_id,
                now=now,
                created_at=message.created_at,  # the receiver reads messages in the order they arose
            )
            await uow.commit()
        return str(stored)


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
    """A worker delivering in the background until the block ends (used by `hub serve` and `hub worker`)."""
    _absent_sniffio_fails_fast()
    stop = asyncio.Event()
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
        task = asyncio.create_task(worker.run_forever(stop))
        try:
            yield worker
        finally:
            stop.set()
            await task
