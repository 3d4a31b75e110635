"""What the worker does besides delivering: asking adapters that poll for status changes made in the
receiver's system, and purging payloads past their retention."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from hub.adapters.base import Adapter, DeliveryError, InboundStatus, OpenReferral
from hub.adapters.registry import UnknownAdapter, adapter_class
from hub.db import flows as flows_db
from hub.db import plans as plans_db
from hub.db import referrals as db
from hub.db.uow import UnitOfWork
from hub.domain.errors import HubError
from hub.domain.principal import Principal, Role
from hub.runtime import Runtime
from hub.services import referrals as ref
from hub.services.context import Actor, utcnow

log = logging.getLogger("hub.delivery")


async def poll_statuses(runtime: Runtime, adapter_of: Callable[[str], Awaitable[Adapter]]) -> int:
    """Ask every adapter that can poll what its receiver did to the referrals it holds, and apply each
    change as the receiver's own event (so the lifecycle rules, the audit and the closed loop hold)."""
    terminal = sorted(ref.lifecycle(runtime.vocabulary).terminal)
    async with UnitOfWork.of(runtime.sessions) as uow:
        endpoints = await db.active_endpoints(uow.session)
    applied = 0
    for organisation_id, name, _config in endpoints:
        try:
            if adapter_class(name).poll is Adapter.poll:
                continue
            adapter = await adapter_of(organisation_id)
        except (UnknownAdapter, DeliveryError):
            continue
        async with UnitOfWork.of(runtime.sessions) as uow:
            open_ = await db.open_received(uow.session, organisation_id, terminal)
        if not open_:
            continue
        try:
            changes = await adapter.poll([OpenReferral(str(i), remote, status) for i, remote, status in open_])
        except DeliveryError as exc:
            log.warning("poll failed", extra={"adapter": name, "error_class": type(exc).__name__})
            continue
        for change in changes:
            applied += await _apply(runtime, organisation_id, name, change)
    return applied


async def _apply(runtime: Runtime, organisation_id: str, adapter: str, change: InboundStatus) -> int:
    receiver = Actor(
        Principal(subject=f"hub:poll:{adapter}", organisation_id=organisation_id, roles=frozenset({Role.SYSTEM}))
    )
    feedback = (change.reason_text or "Completed in the receiver's system.") if change.status == "completed" else None
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
            runtime=runtime,
        )
    except HubError as exc:
        # E.g. the receiver jumped over a status the lifecycle requires: kept for a person to look at.
        log.warning("polled status not applied", extra={"adapter": adapter, "error_class": type(exc).__name__})
        return 0
    return 1


async def purge(runtime: Runtime) -> int:
    """Referrals' payloads past their retention, and plan versions' content past the plan retention."""
    now = utcnow()
    async with UnitOfWork.of(runtime.sessions) as uow:
        purged = await db.purge_payloads(
            uow.session,
            ref.lifecycle(runtime.vocabulary).purge(now, timedelta(days=runtime.settings.payload_retention_days)),
        )
        plans = await plans_db.purge(
            uow.session, before=now - timedelta(days=runtime.settings.plan_retention_days), at=now
        )
        await uow.commit()
    if purged or plans:
        log.info("payloads purged", extra={"count": purged, "plan_versions": plans})
    return purged + plans


async def fold_flow_slots(runtime: Runtime) -> int:
    """The flow rollups' slots of the weeks before last week folded into one row per cell (migration 0027):
    how many rows that removed."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        folded = await flows_db.compact_rollups(uow.session, utcnow())
        await uow.commit()
    if folded:
        log.info("flow rollup slots folded", extra={"count": folded})
    return folded
