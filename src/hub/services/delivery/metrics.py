"""The outbox as Prometheus metrics, read from PostgreSQL at each scrape, so they hold for every worker
process at once (``GET /metrics``; the alert rules are in docs/operations.md). Labels name the receiving
organisation (a registry id: no personal data)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from hub.db.referrals import breaker as db
from hub.db.uow import UnitOfWork
from hub.runtime import Runtime
from hub.services.context import utcnow

_GAUGES = {
    "queued": ("hub_outbox_queued", "Entries waiting for delivery (queued or retrying, not leased)"),
    "in_flight": ("hub_outbox_in_flight", "Entries a worker holds a lease on now"),
    "dead_lettered": ("hub_outbox_dead_lettered", "Entries given up, waiting for an operator (hub outbox retry)"),
    "oldest": ("hub_outbox_oldest_queued_age_seconds", "Age of the oldest entry not yet delivered"),
    "attempts": ("hub_outbox_pending_attempts", "Attempts made so far by the entries not yet delivered"),
    "open": ("hub_delivery_breaker_open", "1 while the receiver's circuit breaker is open (it is down)"),
    "open_for": ("hub_delivery_breaker_open_seconds", "How long the receiver's breaker has been open"),
    "failures": ("hub_delivery_breaker_consecutive_failures", "Transient failures in a row at the receiver"),
}


def render(states: list[db.RecipientOutbox], now: datetime) -> bytes:
    """The Prometheus text for ``states`` (one sample per receiving organisation and gauge)."""
    registry = CollectorRegistry()
    gauges = {key: Gauge(name, doc, ["recipient"], registry=registry) for key, (name, doc) in _GAUGES.items()}
    for s in states:
        values = {
            "queued": s.queued,
            "in_flight": s.in_flight,
            "dead_lettered": s.dead_lettered,
            "oldest": (now - s.oldest_queued_at).total_seconds() if s.oldest_queued_at else 0.0,
            "attempts": s.pending_attempts,
            "open": 1 if s.breaker == "open" else 0,
            "open_for": (now - s.opened_at).total_seconds() if s.opened_at else 0.0,
            "failures": s.consecutive_failures,
        }
        for key, value in values.items():
            gauges[key].labels(recipient=s.recipient).set(value)
    return generate_latest(registry)


async def outbox_metrics(runtime: Runtime) -> bytes:
    now = utcnow()
    async with UnitOfWork.of(runtime.sessions) as uow:
        states = await db.outbox_state(uow.session, now=now)
    return render(states, now)
