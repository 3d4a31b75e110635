"""Recording what happened to a delivery: delivered, to be retried, or given up (dead-lettered), and the
sender told when it is given up.

Every record is fenced (``hub.db.referrals.Claimed``): it is written only while this worker still holds
the entry at the attempt it claimed. A worker whose lease ran out, and whose entry another worker claimed
and perhaps delivered, has its outcome refused (logged as ``outcome refused: lease lost``); what the
receiver got twice carries the same idempotency key.

Retries: exponential backoff with full jitter, capped at ``delivery_backoff_max_seconds`` (15 min by
default), until ``delivery_max_attempts`` attempts or ``delivery_horizon_hours`` since the entry was
queued, whichever comes first; a permanent refusal is dead-lettered at once."""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from hub.adapters.base import DeliveryError, Receipt
from hub.config import Settings
from hub.db import referrals as db
from hub.db.uow import UnitOfWork
from hub.runtime import Runtime
from hub.services import referrals as ref
from hub.services.context import utcnow
from hub.services.delivery.breaker import Breakers

log = logging.getLogger("hub.delivery")

UNREACHABLE = "receiver-unreachable"  # transient failures until the retry horizon or the attempts ran out
REFUSED = "receiver-refused"  # the receiver (or its endpoint's configuration) refused it for good


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^n)]."""
    return rng.uniform(0, min(cap, base * 2 ** min(max(0, attempt - 1), 60)))


def gives_up(settings: Settings, claimed: db.Claimed, now: datetime) -> bool:
    """Transient failures end when the attempts run out or the retry horizon has passed. A probe's
    failure counts against the horizon only: it says the receiver is still down, not that the message is
    at fault, and a receiver down for days is probed thousands of times."""
    if now - claimed.since >= timedelta(hours=settings.delivery_horizon_hours):
        return True
    return not claimed.probe and claimed.entry.attempts >= settings.delivery_max_attempts


async def delivered(
    runtime: Runtime,
    breakers: Breakers,
    claimed: db.Claimed,
    adapter: str,
    receipt: Receipt,
    *,
    received_from: list[str],
    checked: db.Checked,
) -> bool:
    """One statement, committing by itself: the entry delivered and, for a referral, the referral delivered
    and (acknowledged) received, with that event queued for the sender. False: refused (fenced)."""
    entry, now = claimed.entry, utcnow()
    async with UnitOfWork.of(runtime.sessions) as uow, uow.statement() as connection:
        recorded, _ = await db.record_delivered(
            connection,
            entry,
            adapter=adapter,
            remote_id=receipt.remote_id,
            received_from=received_from if receipt.acknowledged else (),
            now=now,
            checked=checked,
        )
        released = await breakers.answered(connection, entry.recipient_organisation, probe=claimed.probe, now=now)
    if released:
        log.info("receiver back: queue released", extra={"count": released, "adapter": adapter})
    if not recorded:
        log.warning("outcome refused: lease lost", extra={"outbox_id": str(entry.id), "attempt": entry.attempts})
        return False
    log.info("delivered", extra={"outbox_id": str(entry.id), "adapter": adapter, "attempt": entry.attempts})
    return True


async def failed(
    runtime: Runtime,
    breakers: Breakers,
    claimed: db.Claimed,
    exc: DeliveryError,
    *,
    permanent: bool,
    checked: db.Checked,
    rng: random.Random,
) -> bool:
    """Retry later, or give up and tell the sender; the receiver's breaker counts the failure (a permanent
    refusal is an answer: the receiver is up). False: refused (fenced)."""
    settings, entry, now = runtime.settings, claimed.entry, utcnow()
    dead = permanent or gives_up(settings, claimed, now)
    delay = exc.retry_after_seconds or backoff_seconds(
        entry.attempts, base=settings.delivery_backoff_base_seconds, cap=settings.delivery_backoff_max_seconds, rng=rng
    )
    remembered = {"checked_outcome": checked.outcome, "checked_decision_id": checked.decision_id}
    async with UnitOfWork.of(runtime.sessions) as uow:
        # The breaker first: an entry to retry behind an open breaker is parked, and only a transaction
        # holding the open breaker's row may park (``hub.db.referrals.breaker``).
        down = not permanent and await breakers.failed(
            uow.session, entry.recipient_organisation, probe=claimed.probe, now=now
        )
        recorded = await db.finish(
            uow.session,
            claimed,
            state="dead-lettered" if dead else "retrying",
            next_attempt_at=now + timedelta(seconds=delay),
            last_error=exc.detail[:500],
            updated_at=now,
            parked_at=now if down and not dead else None,
            **{k: v for k, v in remembered.items() if v is not None},
        )
        if recorded and dead and entry.kind == "referral" and entry.referral_id is not None:
            await tell_sender(uow.session, runtime, entry.referral_id, REFUSED if permanent else UNREACHABLE, now)
        if permanent:
            await breakers.answered(uow.session, entry.recipient_organisation, probe=claimed.probe, now=now)
        elif down and claimed.probe:
            await expire(uow.session, runtime, entry.recipient_organisation, now)
        await uow.commit()
    if not recorded:
        log.warning("outcome refused: lease lost", extra={"outbox_id": str(entry.id), "attempt": entry.attempts})
        return False
    log.warning(
        "dead-lettered" if dead else "delivery failed, will retry",
        extra={"outbox_id": str(entry.id), "attempt": entry.attempts},
    )
    return True


async def expire(session: AsyncSession, runtime: Runtime, recipient: str, now: datetime) -> None:
    """A receiver still down: what waits for it past the retry horizon is given up (no worker claims it
    while the breaker is open, so its own attempts cannot)."""
    horizon_start = now - timedelta(hours=runtime.settings.delivery_horizon_hours)
    for entry in await db.expire_pending(session, recipient, now=now, horizon_start=horizon_start):
        log.warning("dead-lettered", extra={"outbox_id": str(entry.id), "attempt": entry.attempts})
        if entry.kind == "referral" and entry.referral_id is not None:
            await tell_sender(session, runtime, entry.referral_id, UNREACHABLE, now)


async def tell_sender(
    session: AsyncSession,
    runtime: Runtime,
    referral_id: uuid.UUID,
    reason_code: str,
    now: datetime,
) -> None:
    """Delivery given up: the aggregate decides (``Referral.delivery_failed``, not final: an operator may
    queue it again) and the sender gets a ``delivery-failed`` event through its own adapter."""
    locked = await db.referral(session, referral_id, lock=True)
    assert locked is not None
    text = {
        UNREACHABLE: "Not delivered: the receiver's system could not be reached within the retry horizon.",
        REFUSED: "Not delivered: the receiver's system refused it.",
    }[reason_code]
    decided = ref.aggregate(locked, runtime.vocabulary).delivery_failed(reason_code, text, final=False)
    if decided is not None:
        await ref.hub_transition(session, locked, decided, now=now, cipher=runtime.cipher)
