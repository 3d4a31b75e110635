"""A receiving case system for the demo and the README tour: verifies each webhook's signature, keeps
each message once per idempotency key, and prints a line per message (the demo's data is fictional).

Run it with ``hub demo-receiver``; the demo registry points BUP and the Nora school units' endpoints at it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub.adapters.webhook import SIGNATURE_HEADER, SignatureError, verify_signature


def receiver_app(secret: str, *, echo: Any = print) -> FastAPI:
    app = FastAPI(title="hub demo receiver", openapi_url=None, docs_url=None, redoc_url=None)
    seen: dict[str, str] = {}

    @app.post("/{path:path}")
    async def receive(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            verify_signature(secret, request.headers.get(SIGNATURE_HEADER), raw, now=time.time())
        except SignatureError as exc:
            echo(f"refused: {exc}")
            return JSONResponse({"error": "bad signature"}, status_code=401)
        key = request.headers.get("Idempotency-Key", "")
        if key in seen:
            return JSONResponse({"id": seen[key], "duplicate": True})
        seen[key] = f"case-{len(seen) + 1}"
        body = json.loads(raw)
        if "referral" in body:
            r = body["referral"]
            echo(
                f"[{request.url.path}] referral {r['id']} ({r['kind']}) from {r['sender']['organisation_id']}: "
                f"categories {', '.join(r['permitted_categories'])}; reply to {r['reply_to']}"
            )
        elif "team_offer" in body:
            o = body["team_offer"]
            answer = f"; accept at {o['accept']}" if "accept" in o else ""
            echo(
                f"[{request.url.path}] team offer {o['id']}: named person ({o['stage']}) from "
                f"{o['from']['organisation_id']} to {o['to']['organisation_id']} is {o['state']}{answer}"
            )
        elif "plan_version" in body or "plan_notice" in body:
            p = body.get("plan_version") or body["plan_notice"]
            got = f"sections {', '.join(p['sections'])}" if "sections" in p else "a notice: ask the author"
            withheld = ", ".join(w["section"] for w in p["withheld"]) or "none"
            echo(
                f"[{request.url.path}] child's plan version {p['version']} from {p['author']['organisation_id']}: "
                f"{got}; withheld: {withheld}"
            )
        elif "plan_review" in body:
            v = body["plan_review"]
            echo(f"[{request.url.path}] review of plan version {v['version']} by {v['reviewer']['organisation_id']}")
        elif "sip_invitation" in body:
            m = body["sip_invitation"]
            answer = f"; answer at {m['answer']}" if "answer" in m else ""
            echo(
                f"[{request.url.path}] SIP meeting {m['meeting_id']} from {m['inviter']['organisation_id']} "
                f"is {m['state']}{answer}"
            )
        elif "sip_answer" in body:
            a = body["sip_answer"]
            echo(f"[{request.url.path}] SIP meeting {a['meeting_id']}: {a['from']['organisation_id']} {a['answer']}")
        else:
            e = body["event"]
            by = e["by_organisation"] or "the hub"
            if "answer" in e:  # a report of concern answered: its code, not a new status
                echo(f"[{request.url.path}] report of concern {e['referral_id']} answered: {e['answer']} (by {by})")
            else:
                echo(f"[{request.url.path}] referral {e['referral_id']} is now {e['status']} (by {by})")
        return JSONResponse({"id": seen[key]})

    @app.get("/{path:path}")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
