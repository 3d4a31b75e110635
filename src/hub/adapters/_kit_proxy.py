"""The conformance kit's fault-injecting HTTP proxy: it sits on loopback in front of the adapter's target,
passes requests through (recording both sides) or answers with a scripted fault instead."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip


@dataclass(frozen=True)
class Fault:
    """What the proxy does with the next requests: pass them on, hold them unanswered, or answer itself."""

    kind: Literal["pass", "stall", "respond"] = "pass"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # JSON

    @classmethod
    def respond(cls, status: int, body: Any = None, **headers: str) -> Fault:
        return cls("respond", status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


PASS = Fault()
STALL = Fault("stall")


@dataclass(frozen=True)
class Exchange:
    """One request the adapter made, and (when passed through) the target's answer."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    upstream_status: int | None = None
    upstream_headers: dict[str, str] = field(default_factory=dict)
    upstream_body: bytes = b""

    def carries(self, value: str) -> bool:
        """``value`` appears in this request's headers, URL or body (e.g. an idempotency key)."""
        return (
            any(value in v for v in self.headers.values())
            or value in self.path
            or value in self.query
            or value.encode() in self.body
        )

    def upstream_id(self) -> str | None:
        """The target's id for what it stored: JSON ``id``-like field or ``Location``, if it gave one."""
        location = self.upstream_headers.get("location")
        if location:
            return location
        try:
            data = json.loads(self.upstream_body) if self.upstream_body else None
        except ValueError:
            return None
        if isinstance(data, dict):
            for key, value in data.items():
                if key.lower() in ("id", "caseid", "case_id", "remote_id", "remoteid") and isinstance(value, str | int):
                    return str(value)
        return None


class FaultProxy:
    """ASGI app forwarding ``/path?query`` to ``upstream`` + ``/path?query`` unless ``fault`` says otherwise."""

    def __init__(self, upstream: str, *, upstream_timeout: float = 30.0, stall_cap: float = 120.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.fault = PASS
        self.exchanges: list[Exchange] = []
        self.upstream_timeout = upstream_timeout
        self.stall_cap = stall_cap
        self._lock = threading.Lock()

    def reset(self, fault: Fault = PASS) -> None:
        with self._lock:
            self.fault = fault
            self.exchanges = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        exchange = Exchange(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
        )
        fault = self.fault
        if fault.kind == "stall":
            self._record(exchange)
            await self._hold(receive)
            await _answer(send, 504, {}, b"")
            return
        if fault.kind == "respond":
            self._record(exchange)
            payload = b"" if fault.body is None else json.dumps(fault.body).encode()
            content_type = "application/problem+json" if fault.status >= 400 else "application/json"
            await _answer(send, fault.status, {"content-type": content_type, **fault.headers}, payload)
            return
        url = self.upstream + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if exchange.query:
            url += "?" + exchange.query
        forwarded = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        try:
            async with httpx.AsyncClient(timeout=self.upstream_timeout, follow_redirects=False) as client:
                response = await client.request(scope["method"], url, headers=forwarded, content=body)
        except httpx.HTTPError as exc:
            self._record(exchange)
            await _answer(send, 502, {"content-type": "text/plain"}, f"kit proxy: {type(exc).__name__}".encode())
            return
        answer_headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
        answer_headers.pop("content-encoding", None)  # httpx has decoded the body
        self._record(
            replace(
                exchange,
                upstream_status=response.status_code,
                upstream_headers=answer_headers,
                upstream_body=response.content,
            )
        )
        await _answer(send, response.status_code, answer_headers, response.content)

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    async def _hold(self, receive: Any) -> None:
        """Answer nothing until the adapter gives up (disconnects) or ``stall_cap`` passes."""

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(disconnected(), timeout=self.stall_cap)
        except TimeoutError:
            pass


async def _answer(send: Any, status: int, headers: dict[str, str], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
