"""The flows' folder: applies the queue of new referrals and status events to the coordinators' flow
tables off the request path (migration 0030, docs/operations.md "The flows' folder").

Every ``hub serve`` and ``hub worker`` process runs :func:`running_folder`; a fold holds an advisory lock,
so one runs at a time and the others wait their turn and find less to do. Before any flow read,
:func:`fold_before_read` folds what is still queued, so a read counts every referral committed before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import Settings
from hub.database_availability import is_database_unavailable
from hub.db import flow_fold
from hub.services.background import running_task

log = logging.getLogger("hub.flows")


async def fold_all(engine: AsyncEngine, *, batch: int) -> int:
    """Fold everything queued now, ``batch`` rows a transaction; how many rows were folded. Each
    transaction commits what it folded: a failure leaves that batch queued, and what came before folded."""
    folded = 0
    while True:
        async with engine.begin() as conn:
            if not await flow_fold.queued(conn):
                return folded
            done = await flow_fold.fold(conn, max_rows=batch)
        folded += done
        if done < batch:
            return folded


async def fold_before_read(engine: AsyncEngine, settings: Settings) -> None:
    """Fold what is queued before a flow read (read-your-writes: a referral answered 202 is counted by the
    next read). Should the fold fail, the read still answers, from what is folded, and the failure is
    logged: the rows stay queued for the folder to retry."""
    try:
        await fold_all(engine, batch=settings.flow_fold_batch_size)
    except Exception as exc:  # the class only: a driver's message can carry the row it failed on
        if is_database_unavailable(exc):
            raise  # the read would fail the same way: the API answers 503
        log.error("flow fold before a read failed; reading what is folded", extra={"error_class": type(exc).__name__})


async def _fold_forever(engine: AsyncEngine, settings: Settings) -> None:
    while True:
        try:
            await fold_all(engine, batch=settings.flow_fold_batch_size)
        except Exception as exc:  # the database away, a row that cannot be folded: say so, keep trying
            if is_database_unavailable(exc):
                log.warning("flow folding waits for the database", extra={"error_class": type(exc).__name__})
            else:
                log.error("flow folding failed; retrying", extra={"error_class": type(exc).__name__})
        await asyncio.sleep(settings.flow_fold_interval_seconds)


@asynccontextmanager
async def running_folder(engine: AsyncEngine, settings: Settings) -> AsyncIterator[None]:
    """Run the folder beside whatever the block does (``hub serve``, ``hub worker``), unless HUB_FLOW_FOLDER
    is off (the readers still fold before they read)."""
    if not settings.flow_folder:
        yield
        return
    async with running_task(_fold_forever(engine, settings), name="hub-flow-folder"):
        yield


async def folder_metrics(engine: AsyncEngine) -> bytes:
    """``hub_flow_pending`` for ``/metrics``: what the folder has not folded yet (every process's, from the
    database). Growing while referrals come in means the folder is stuck (docs/operations.md)."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "hub_flow_pending",
        "Referrals and status events queued for the coordinators' flow tables, not folded yet",
        registry=registry,
    )
    async with engine.connect() as conn:
        gauge.set(await flow_fold.pending(conn))
    return generate_latest(registry)
