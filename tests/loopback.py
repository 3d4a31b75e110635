"""Real HTTP servers on loopback for adapter tests (shared: the fhir-r4 and webhook tests both import this).

Stable API:

- ``serve(app) -> ContextManager[str]``: runs any ASGI app with uvicorn on 127.0.0.1 on a free port in a
  background thread and yields its base URL (``http://127.0.0.1:PORT``, no trailing slash). The server is
  up before the ``with`` body runs and stopped (hung requests cancelled) when it ends.
- ``free_port() -> int``: a port nothing listens on right now.
- ``refused_url() -> str``: an ``http://127.0.0.1:PORT`` URL where a connection is refused.
- ``Recorder``: a scriptable ASGI app that records every request (``.requests``) and answers with
  ``.respond(request) -> Reply`` (default: 200 ``{"id": "remote-<n>"}``); ``Reply.delay`` sleeps before
  answering, for timeout tests.

The servers run in their own thread with their own event loop, so they work the same from sync tests and
from async tests (pytest-asyncio), and no network call is faked.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from hub.adapters._kit_server import free_port as _free_port
from hub.adapters._kit_server import serve_asgi

__all__ = ["Recorded", "Recorder", "Reply", "free_port", "refused_url", "serve"]


def free_port() -> int:
    return _free_port()


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def serve(app: Any, *, startup_timeout: float = 10.0, log_level: str = "warning") -> AbstractContextManager[str]:
    """Run ``app`` (any ASGI app) on a fresh loopback port; yield ``http://127.0.0.1:PORT``."""
    return serve_asgi(app, startup_timeout=startup_timeout, log_level=log_level)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialised unless bytes/str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering


class Recorder:
    """An ASGI app that records requests and answers as scripted: ``Recorder(lambda req: Reply(503))``."""

    def __init__(self, respond: Callable[[Recorded], Reply] | None = None) -> None:
        self.requests: list[Recorded] = []
        self.respond = respond or (lambda req: Reply(200, {"id": f"remote-{len(self.requests)}"}))
        self._lock = threading.Lock()

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
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        request = Recorded(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=b"".join(chunks),
        )
        with self._lock:
            self.requests.append(request)
        reply = self.respond(request)
        if reply.delay and await _disconnected_within(receive, reply.delay):
            return  # the client gave up (a timeout test): nothing to answer
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif isinstance(reply.body, str):
            payload = reply.body.encode()
        elif reply.body is None:
            payload = b""
        else:
            payload = json.dumps(reply.body).encode()
        headers = {"content-type": "application/json", **{k.lower(): v for k, v in reply.headers.items()}}
        if not payload:
            headers.pop("content-type")
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": payload if scope["method"] != "HEAD" else b""})


async def _disconnected_within(receive: Any, seconds: float) -> bool:
    """Sleep ``seconds``, unless the client disconnects first (then True), so a hung reply ends with
    its client instead of holding up the server's shutdown."""

    async def wait_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(wait_disconnect())
    try:
        await asyncio.wait_for(asyncio.shield(watcher), timeout=seconds)
        return True
    except TimeoutError:
        return False
    finally:
        watcher.cancel()
