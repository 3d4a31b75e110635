"""Webhook receivers for the tests, as an integrator would write one: verify the signature over the raw
body, dedupe on Idempotency-Key, answer 201 with an id (200 with the same id for a replay)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub.adapters.webhook import SIGNATURE_HEADER, SignatureError, verify_signature


@dataclass
class Inbox:
    """What a receiver stored: one record per effect, keyed by its id."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def effects(self, key: str) -> int:
        return sum(1 for r in self.records.values() if r["key"] == key)


def webhook_receiver(secret: str, inbox: Inbox, *, honour_idempotency: bool = True) -> FastAPI:
    app = FastAPI()

    @app.head("/hooks/hub")
    async def head() -> JSONResponse:
        return JSONResponse(None, status_code=200)

    @app.post("/hooks/hub")
    async def receive(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            verify_signature(secret, request.headers.get(SIGNATURE_HEADER), raw, now=time.time())
        except SignatureError as exc:
            inbox.rejected.append(str(exc))
            return JSONResponse({"title": "Bad signature"}, status_code=401)
        key = request.headers["idempotency-key"]
        with inbox.lock:
            if honour_idempotency and key in inbox.by_key:
                return JSONResponse({"id": inbox.by_key[key]}, status_code=200)
            record_id = f"rcv-{uuid.uuid4().hex[:10]}"
            inbox.by_key[key] = record_id
            inbox.records[record_id] = {
                "key": key,
                "kind": request.headers["hub-message-kind"],
                "message_id": request.headers["hub-message-id"],
                "body": raw,
            }
        return JSONResponse({"id": record_id}, status_code=201)

    return app
