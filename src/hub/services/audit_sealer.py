"""The sealer: fixes the order of new audit entries and hashes them into the log's Merkle tree, off the
request path, and signs checkpoints (docs/audit.md).

Every ``hub serve`` and ``hub worker`` process runs :func:`running_sealer` (unless HUB_AUDIT_SEALER is
off); each round, the process whose transaction takes the sealer's advisory lock seals, the others skip.
Appends never wait for it: they insert and queue (``hub.db.audit``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import Settings
from hub.database_availability import is_database_unavailable
from hub.db import audit_tree
from hub.domain.checkpoint import Checkpoint, TreeHead
from hub.keys import AuditSigner, audit_signer
from hub.services.background import running_task

log = logging.getLogger("hub.audit")


@dataclass(frozen=True)
class SealRound:
    locked: bool  # False: another process's sealer held the lock; nothing was done
    sealed: int = 0
    size: int = 0
    checkpoint: Checkpoint | None = None


async def seal_round(
    engine: AsyncEngine,
    signer: AuditSigner,
    settings: Settings,
    *,
    checkpoint: bool | None = None,
    wait: bool = False,
    now: datetime | None = None,
) -> SealRound:
    """One transaction: seal a batch of queued entries, then sign a checkpoint if one is due (the log grew
    and the newest is older than HUB_AUDIT_CHECKPOINT_INTERVAL_SECONDS) or ``checkpoint`` asks for one.
    All or nothing: a sealer killed mid-round leaves the queue and the tree as they were. ``wait``: wait
    for another process's round to end instead of skipping this one."""
    now = now or datetime.now(UTC)
    async with engine.begin() as conn:
        if not await audit_tree.try_lock(conn, wait=wait):
            return SealRound(locked=False)
        sealed = await audit_tree.seal_batch(conn, limit=settings.audit_seal_batch_size)
        if checkpoint is None:
            last = await audit_tree.latest_checkpoint_at(conn)
            interval = settings.audit_checkpoint_interval_seconds
            checkpoint = sealed.size > 0 and (
                last is None or (last[0] < sealed.size and (now - last[1]).total_seconds() >= interval)
            )
        signed = None
        if checkpoint:
            root = await audit_tree.tree_root(conn, sealed.size)
            signed = signer.sign(TreeHead(settings.audit_log_origin, sealed.size, root, now))
            await audit_tree.add_checkpoint(conn, signed)
    return SealRound(locked=True, sealed=sealed.entries, size=sealed.size, checkpoint=signed)


async def seal_all(engine: AsyncEngine, settings: Settings, *, checkpoint: bool = False) -> SealRound:
    """Seal everything queued now (waiting for another sealer's round if one runs); with ``checkpoint``
    sign a checkpoint of the result (``hub audit checkpoint``, tests)."""
    signer = audit_signer(settings)
    while True:
        result = await seal_round(engine, signer, settings, checkpoint=False, wait=True)
        if result.sealed < settings.audit_seal_batch_size:
            break
    if not checkpoint:
        return result
    return await seal_round(engine, signer, settings, checkpoint=True, wait=True)


async def _seal_forever(engine: AsyncEngine, signer: AuditSigner, settings: Settings) -> None:
    while True:
        try:
            result = await seal_round(engine, signer, settings)
        except Exception as exc:  # the database away, a tampered tree: say so, keep trying
            # The class only: a driver's message can carry the statement's parameters (entries' content).
            if is_database_unavailable(exc):
                log.warning("audit sealing waits for the database", extra={"error_class": type(exc).__name__})
            else:
                log.error("audit sealing failed; retrying", extra={"error_class": type(exc).__name__})
            result = SealRound(locked=False)
        if result.checkpoint is not None:
            log.info("audit checkpoint signed", extra={"count": result.checkpoint.head.size})
        if not result.locked or result.sealed < settings.audit_seal_batch_size:
            await asyncio.sleep(settings.audit_seal_interval_seconds)


@asynccontextmanager
async def running_sealer(engine: AsyncEngine, settings: Settings) -> AsyncIterator[None]:
    """Run the sealer beside whatever the block does (``hub serve``, ``hub worker``)."""
    if not settings.audit_sealer:
        yield
        return
    async with running_task(_seal_forever(engine, audit_signer(settings), settings), name="hub-audit-sealer"):
        yield
