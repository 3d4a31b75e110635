"""The truly minimal yardstick for ``bench.referrals``: FastAPI + asyncpg whose ``POST /v1/referrals`` does
three plain inserts — a referral, its event, its outbox entry — in one transaction on a pooled connection,
and nothing else: no authentication (the sender is read from the token unverified), no decision, no audit,
no encryption, no idempotency lookup, and tables of its own (``minimal_*``, made at start) with primary
keys and the referral's (sender, Idempotency-Key) unique index but no triggers.

``bench.baseline`` is the other yardstick: the hub's own statements, without the hub's work around them.

Served like the hub (``--workers`` uvicorn processes, SO_REUSEPORT):

    python -m bench.baseline_minimal serve --host 127.0.0.1 --port 8100 [--workers 2]   (HUB_DATABASE_URL set)
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import Body, FastAPI, Header, Response

from bench.baseline import _claims, serve_main
from bench.server import HubUnderTest, pythonpath

TABLES = """
create table if not exists minimal_referral (
    id uuid primary key, sender text not null, recipient text not null, kind text not null, status text not null,
    child text not null, data_categories text[] not null, idempotency_key text not null, payload bytea not null,
    created_at timestamptz not null, unique (sender, idempotency_key));
create table if not exists minimal_event (
    id uuid primary key, referral_id uuid not null, seq int not null, to_status text not null, by_subject text,
    occurred_at timestamptz not null);
create table if not exists minimal_outbox (
    id uuid primary key, referral_id uuid not null, recipient text not null, state text not null,
    next_attempt_at timestamptz not null, created_at timestamptz not null);
"""
REFERRAL = (
    "insert into minimal_referral (id, sender, recipient, kind, status, child, data_categories, idempotency_key,"
    " payload, created_at) values ($1, $2, $3, $4, 'requested', $5, $6, $7, $8, $9)"
)
EVENT = (
    "insert into minimal_event (id, referral_id, seq, to_status, by_subject, occurred_at)"
    " values ($1, $2, 1, 'requested', $3, $4)"
)
OUTBOX = (
    "insert into minimal_outbox (id, referral_id, recipient, state, next_attempt_at, created_at)"
    " values ($1, $2, $3, 'queued', $4, $4)"
)
COUNT = "select count(*) from minimal_referral"


def create_app() -> FastAPI:
    # The owner's URL when given: the service makes its own tables (the hub's runtime role may not).
    url = os.environ.get("HUB_MIGRATIONS_DATABASE_URL") or os.environ["HUB_DATABASE_URL"]
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pool_size = int(os.environ.get("BASELINE_POOL_SIZE", "20"))
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("select pg_advisory_lock(7274299)")  # workers start together
            await conn.execute(TABLES)
        finally:
            await conn.close()
        state["pool"] = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        try:
            yield
        finally:
            await state["pool"].close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/referrals", status_code=202)
    async def send(
        response: Response,
        body: dict[str, Any] = Body(...),
        key: str = Header(alias="Idempotency-Key"),
        authorization: str | None = Header(default=None),
    ) -> dict[str, str]:
        claims = _claims(authorization)
        sender, subject = str(claims.get("org_id", "nora-elevhalsa")), str(claims.get("sub", "dev"))
        recipient = str(body["target"]["organisation_id"])
        now, referral_id = datetime.now(UTC), uuid.uuid4()
        child = "k1:" + str(body["child"]["personal_identity_number"])
        async with state["pool"].acquire() as conn, conn.transaction():
            await conn.execute(
                REFERRAL,
                referral_id,
                sender,
                recipient,
                body["kind"],
                child,
                sorted(body["data_categories"]),
                key,
                json.dumps(body).encode(),
                now,
            )
            await conn.execute(EVENT, uuid.uuid4(), referral_id, subject, now)
            await conn.execute(OUTBOX, uuid.uuid4(), referral_id, recipient, now)
        href = f"/v1/referrals/{referral_id}"
        response.headers["Location"] = href
        return {"id": str(referral_id), "status": "requested", "href": href}

    return app


def minimal_service(*, workers: int, pool_size: int = 20) -> HubUnderTest:
    """This service served like the hub on its own fresh database: the context manager to measure it by."""
    env = {"PYTHONPATH": pythonpath(), "BASELINE_POOL_SIZE": str(pool_size)}
    return HubUnderTest(workers=workers, extra_env=env, command=[sys.executable, "-m", "bench.baseline_minimal"])


def main(argv: Sequence[str] | None = None) -> int:
    return serve_main(argv, "bench.baseline_minimal:create_app", __doc__ or "")


if __name__ == "__main__":
    raise SystemExit(main())
