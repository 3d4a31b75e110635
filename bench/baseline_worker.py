"""The yardstick for ``bench.delivery``: a minimal outbox worker that makes only the statements and HTTP
requests a ``hub worker`` makes per delivery, and nothing else.

Per claimed batch (the hub's own claim, ``hub.db.referrals.CLAIM``) one read of its referrals; then, at
most ``--in-flight`` at a time, for a referral: the send-time facts read and the decision row with its
audit entry (the hub's ``hub.db.lawful`` statements, committing by themselves; the decision is always
"allowed", no engine runs), a signed webhook POST (``hub.adapters.webhook.sign``, the stored encrypted
payload base64'd in a small JSON body: about the hub's size) with httpx, and the hub's own
``REFERRAL_DELIVERED`` statement (received, its event and the status event queued for the sender); for
a status event: the POST and ``DELIVERED``. No decryption, no decision engine, no message building, no
logging, no SQLAlchemy: asyncpg on a pool of its own.

    python -m bench.baseline_worker --dsn DSN --receiver URL --secret SECRET [--batch-size 40] [--in-flight 8]

Runs until SIGTERM, as ``hub worker`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bench.baseline import _audit
from hub.adapters.webhook import SIGNATURE_HEADER, encode_body, sign
from hub.db import lawful
from hub.db import referrals as db
from hub.db.engine import Statement

_REFERRALS = Statement(
    "select id, sender_organisation, recipient_organisation, kind, child_pseudonym, permitted_categories, payload "
    "from referral where id = any(:ids)"
)


class Yardstick:
    def __init__(self, pool: asyncpg.Pool, http: httpx.AsyncClient, receiver: str, secret: str, in_flight: int):
        self.pool, self.http, self.receiver, self.secret = pool, http, receiver, secret
        self.in_flight = asyncio.Semaphore(in_flight)

    async def round(self, batch_size: int) -> int:
        async with self.pool.acquire() as conn:
            claimed = await db.CLAIM.fetch(conn, {"now": datetime.now(UTC), "lease": 60.0, "limit": batch_size})
            if not claimed:
                return 0
            ids = [row["referral_id"] for row in claimed if row["kind"] == "referral"]
            referrals = {row["id"]: row for row in await _REFERRALS.fetch(conn, {"ids": ids})} if ids else {}
        await asyncio.gather(*(self._one(entry, referrals) for entry in claimed))
        return len(claimed)

    async def _one(self, entry: Any, referrals: dict[uuid.UUID, Any]) -> None:
        async with self.in_flight:
            if entry["kind"] == "referral":
                await self._referral(entry, referrals[entry["referral_id"]])
            else:
                body = {"event": {"id": str(entry["event_id"]), "referral_id": str(entry["referral_id"])}}
                remote = await self._post(entry, "status-event", body)
                async with self.pool.acquire() as conn:
                    await db.DELIVERED.fetchrow(
                        conn, {"outbox_id": entry["id"], "adapter": "webhook", "remote_id": remote, "now": _now()}
                    )

    async def _referral(self, entry: Any, row: Any) -> None:
        sender, recipient, child = row["sender_organisation"], row["recipient_organisation"], row["child_pseudonym"]
        decision_id, now = uuid.uuid4(), _now()
        canonical = json.dumps(
            {"occurred_at": now.isoformat(), "action": "sharing-decision", "actor_organisation": sender,
             "child_pseudonym": child, "decision_id": str(decision_id)},
            sort_keys=True,
            separators=(",", ":"),
        )  # fmt: skip
        async with self.pool.acquire() as conn:
            await lawful.FACTS.fetchrow(conn, {"sender": sender, "recipient": recipient, "children": [child]})
        async with self.pool.acquire() as conn:
            await lawful._RECORD_DECISION.fetchrow(
                conn,
                {
                    "id": decision_id,
                    "by": "hub:delivery",
                    "f": sender,
                    "t": recipient,
                    "c": child,
                    "p": row["kind"],
                    "a": True,
                    "lb": "consent",
                    "ref": None,
                    "perm": list(row["permitted_categories"]),
                    "den": [],
                    "ex": '{"reasons": [], "remedies": []}',
                    "dry": False,
                    **_audit(sender, recipient, child, decision_id, canonical, now, "sharing-decision"),
                },
            )
        body = {
            "referral": {
                "id": str(row["id"]),
                "kind": row["kind"],
                "sender": sender,
                "recipient": recipient,
                "permitted_categories": list(row["permitted_categories"]),
                "payload": base64.b64encode(row["payload"] or b"").decode(),
            }
        }
        remote = await self._post(entry, "referral", body)
        event_id = uuid.uuid4()
        async with self.pool.acquire() as conn:
            await db.REFERRAL_DELIVERED.fetchval(
                conn,
                {
                    "outbox_id": entry["id"],
                    "adapter": "webhook",
                    "remote_id": remote,
                    "now": _now(),
                    "referral_id": row["id"],
                    "acknowledged": True,
                    "event_id": event_id,
                    "event_outbox_id": uuid.uuid4(),
                    "event_key": f"event:{event_id}",
                },
            )

    async def _post(self, entry: Any, kind: str, body: dict[str, Any]) -> str | None:
        raw = encode_body(body)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": entry["idempotency_key"],
            "Hub-Message-Id": str(entry["id"]),
            "Hub-Message-Kind": kind,
            SIGNATURE_HEADER: sign(self.secret, raw, timestamp=int(time.time())),
        }
        url = f"{self.receiver}/{entry['recipient_organisation']}"
        response = await self.http.post(url, content=raw, headers=headers)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer.get("id")


def _now() -> datetime:
    return datetime.now(UTC)


async def _run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    limits = httpx.Limits(max_connections=args.in_flight, max_keepalive_connections=args.in_flight)
    async with (
        asyncpg.create_pool(args.dsn, min_size=2, max_size=args.in_flight + 2) as pool,
        httpx.AsyncClient(timeout=10, limits=limits) as http,
    ):
        yardstick = Yardstick(pool, http, args.receiver, args.secret, args.in_flight)
        while not stop.is_set():
            if not await yardstick.round(args.batch_size):
                try:
                    await asyncio.wait_for(stop.wait(), timeout=0.2)
                except TimeoutError:
                    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--receiver", required=True, help="the receiving server's base URL")
    parser.add_argument("--secret", required=True, help="the webhook signing secret")
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--in-flight", type=int, default=8)
    asyncio.run(_run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
