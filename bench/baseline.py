"""The yardsticks for ``bench.referrals`` and ``bench.sharing``: a minimal FastAPI + asyncpg service whose
``POST /v1/referrals`` does only the inserts a referral makes, and whose ``POST /v1/sharing-decisions`` does
only the two statements a decision makes, and nothing else.

Per request, in one transaction on a pooled asyncpg connection: the referral row, its first event, its
outbox entry, the sharing decision row and one audit entry (appended and queued for the sealer with the
hub's own statement, ``hub.db.audit.APPEND_CTES`` + ``APPEND_INSERT``), each as the hub's SQL shapes, one
statement each. No authentication (the sender is read from the token's claims unverified), no decision
engine, no vocabulary checks, no encryption (the body is stored as the payload), no idempotency lookup.
``POST /v1/sharing-decisions``: the hub's own two statements (``hub.db.lawful``), the facts read (its
consents are not parsed, no engine runs: the decision is always "allowed") and the decision row with its
audit entry, committing by itself, on a pooled asyncpg connection; no authentication either.

Served like the hub: ``--workers`` uvicorn (uvloop, httptools) processes on loopback, each with its own
listening socket on the port (SO_REUSEPORT), as ``hub serve --workers N`` does.

    python -m bench.baseline serve --host 127.0.0.1 --port 8100 [--workers 2]   (HUB_DATABASE_URL set)
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import Body, FastAPI, Header, Response

from bench.server import HubUnderTest, pythonpath
from hub.db import audit as audit_db
from hub.db import lawful
from hub.db.engine import Statement

REFERRAL = Statement(
    """
    insert into referral (id, sender_organisation, recipient_organisation, service_id, kind, status,
        cancellation_requested_at, delivered_at, child_pseudonym, dimensions, trappan_step, data_categories,
        permitted_categories, legal_basis, basis_reference, decision_id, idempotency_key, request_hash, payload,
        payload_key_id, payload_purged_at, created_at, updated_at)
    values (:id, :sender, :recipient, null, :kind, 'requested', null, null, :child, :dimensions, :step,
        :categories, :categories, 'consent', null, :decision_id, :key, :hash, :payload, 'none', null, :now, :now)
    """
)
EVENT = Statement(
    """
    insert into referral_event (id, referral_id, seq, type, from_status, to_status, by_organisation, by_subject,
        reason_code, suggested_organisation, suggested_service, details, details_key_id, idempotency_key,
        occurred_at)
    values (:id, :referral_id, 1, 'status', null, 'requested', :sender, :subject, null, null, null, null, null,
        null, :now)
    """
)
OUTBOX = Statement(
    """
    insert into outbox (id, referral_id, event_id, kind, recipient_organisation, idempotency_key, state, attempts,
        next_attempt_at, lease_until, last_error, adapter, remote_id, delivered_at, created_at, updated_at)
    values (:id, :referral_id, null, 'referral', :recipient, :key, 'queued', 0, :now, null, null, null, null,
        null, :now, :now)
    """
)
DECISION = Statement(
    """
    insert into sharing_decision (id, requested_by, from_organisation, to_organisation, child_pseudonym, purpose,
        allowed, legal_basis, basis_reference, permitted_categories, denied_categories, explanation, dry_run)
    values (:id, :by, :f, :t, :c, :p, true, 'consent', null, :perm, :den, cast(:ex as jsonb), false)
    """
)
AUDIT = Statement("with " + audit_db.APPEND_CTES + audit_db.APPEND_INSERT)


def _audit(
    sender: str, recipient: str, child: str, decision_id: uuid.UUID, canonical: str, now: datetime, action: str
) -> dict[str, Any]:
    """The bind parameters of the hub's audit append (``hub.db.audit.append_params``) for one entry."""
    return {
        "partition": sender,
        "canonical": canonical,
        "occurred_at": now,
        "action": action,
        "outcome": "0",
        "actor_organisation": sender,
        "counterpart_organisation": recipient,
        "child_pseudonym": child,
        "legal_basis": "consent",
        "decision_id": str(decision_id),
        "request_id": None,
    }


def _claims(authorization: str | None) -> dict[str, Any]:
    """The token's claims, not verified (the yardstick does no authentication)."""
    try:
        payload = (authorization or "").split(" ", 1)[1].split(".")[1]
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims
    except (IndexError, ValueError):
        return {}


def create_app() -> FastAPI:
    dsn = os.environ["HUB_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
    pool_size = int(os.environ.get("BASELINE_POOL_SIZE", "20"))
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
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
        sender = str(claims.get("org_id", "nora-elevhalsa"))
        subject = str(claims.get("sub", "dev"))
        recipient = str(body["target"]["organisation_id"])
        now = datetime.now(UTC)
        referral_id, decision_id = uuid.uuid4(), uuid.uuid4()
        child = "k1:" + str(body["child"]["personal_identity_number"])
        categories = sorted(body["data_categories"])
        canonical = json.dumps(
            {
                "occurred_at": now.isoformat(),
                "action": "referral-sent",
                "outcome": "0",
                "actor_subject": subject,
                "actor_organisation": sender,
                "counterpart_organisation": recipient,
                "child_pseudonym": child,
                "decision_id": str(decision_id),
                "entity_id": str(referral_id),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        async with state["pool"].acquire() as conn, conn.transaction():
            await REFERRAL.fetchrow(
                conn,
                {
                    "id": referral_id,
                    "sender": sender,
                    "recipient": recipient,
                    "kind": body["kind"],
                    "child": child,
                    "dimensions": list(body["concern"]["dimensions"]),
                    "step": body["concern"].get("trappan_step"),
                    "categories": categories,
                    "decision_id": decision_id,
                    "key": key,
                    "hash": "0" * 64,
                    "payload": json.dumps(body).encode(),
                    "now": now,
                },
            )
            await EVENT.fetchrow(
                conn, {"id": uuid.uuid4(), "referral_id": referral_id, "sender": sender, "subject": subject, "now": now}
            )
            await OUTBOX.fetchrow(
                conn,
                {
                    "id": uuid.uuid4(),
                    "referral_id": referral_id,
                    "recipient": recipient,
                    "key": f"{sender}:{key}",
                    "now": now,
                },
            )
            await DECISION.fetchrow(
                conn,
                {
                    "id": decision_id,
                    "by": subject,
                    "f": sender,
                    "t": recipient,
                    "c": child,
                    "p": body["kind"],
                    "perm": categories,
                    "den": [],
                    "ex": '{"reasons": [], "remedies": []}',
                },
            )
            await AUDIT.fetchrow(
                conn,
                _audit(sender, recipient, child, decision_id, canonical, now, "referral-sent"),
            )
        href = f"/v1/referrals/{referral_id}"
        response.headers["Location"] = href
        return {"id": str(referral_id), "status": "requested", "href": href}

    @app.post("/v1/sharing-decisions")
    async def decide(body: dict[str, Any] = Body(...), authorization: str | None = Header(default=None)) -> Any:
        claims = _claims(authorization)
        sender = str(claims.get("org_id", "nora-grundskola"))
        recipient = str(body["to_organisation"])
        child = "k1:" + str(body["child"]["personal_identity_number"])
        categories = list(body["data_categories"])
        decision_id, now = uuid.uuid4(), datetime.now(UTC)
        canonical = json.dumps(
            {
                "occurred_at": now.isoformat(),
                "action": "sharing-decision",
                "actor_organisation": sender,
                "child_pseudonym": child,
                "decision_id": str(decision_id),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        async with state["pool"].acquire() as conn:
            facts = await lawful.FACTS.fetchrow(conn, {"sender": sender, "recipient": recipient, "children": [child]})
            await lawful._RECORD_DECISION.fetchrow(
                conn,
                {
                    "id": decision_id,
                    "by": "dev",
                    "f": sender,
                    "t": recipient,
                    "c": child,
                    "p": body["purpose"],
                    "a": True,
                    "lb": "consent",
                    "ref": None,
                    "perm": categories,
                    "den": [],
                    "ex": '{"reasons": [], "remedies": []}',
                    "dry": True,
                    **_audit(sender, recipient, child, decision_id, canonical, now, "sharing-decision"),
                },
            )
        return {"id": str(decision_id), "allowed": True, "consents": len(facts["consents"])}

    return app


def yardstick(*, workers: int, pool_size: int = 20) -> HubUnderTest:
    """This service served like the hub (``--workers`` processes) on its own fresh database with the demo
    registry: the context manager the benchmarks measure it through."""
    env = {"PYTHONPATH": pythonpath(), "BASELINE_POOL_SIZE": str(pool_size)}
    return HubUnderTest(workers=workers, extra_env=env, command=[sys.executable, "-m", "bench.baseline"])


def _serve_one(host: str, port: int, app: str = "bench.baseline:create_app") -> None:
    """One worker process: its own listening socket on the shared port (SO_REUSEPORT), like ``hub serve``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, factory=True, host=host, port=port, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    return serve_main(argv, "bench.baseline:create_app", __doc__ or "")


def serve_main(argv: Sequence[str] | None, app: str, doc: str) -> int:
    """Serve ``app`` as ``hub serve --workers N`` does: N processes, each listening on the port
    (SO_REUSEPORT), so the kernel spreads the clients' connections over them; until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m " + app.split(":")[0], description=doc.splitlines()[0])
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_serve_one, args=(args.host, args.port, app)) for _ in range(args.workers)]
    stop: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: stop.append(signum))
    for process in processes:
        process.start()
    try:
        while not stop and all(p.is_alive() for p in processes):
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
