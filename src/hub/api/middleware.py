"""Pure ASGI middleware: request ids, body limit, media type, access log and metrics.

Pure ASGI rather than ``BaseHTTPMiddleware`` because it sits on every request's hot path.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.context import request_id_var
from hub.api.problems import HTTP_PROBLEMS, PROBLEM_JSON, BodyTooLarge, problem_body

access_log = logging.getLogger("hub.access")

REQUESTS = Counter("hub_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "hub_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_JSON_TYPES = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class RequestContextMiddleware:
    """Sets the request id, enforces the body limit and JSON media type, logs and measures."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}
        method = scope["method"]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            early = self._precheck(method, headers)
            if early is not None:
                await self._send_problem(send_wrapper, *early)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        raise BodyTooLarge(self.max_body_bytes)
                return message

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except BodyTooLarge:
                if not status_holder["started"]:
                    await self._send_problem(send_wrapper, 413, self._too_large())
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            REQUESTS.labels(method, route, str(status_holder["status"])).inc()
            LATENCY.labels(method, route).observe(elapsed)
            # The route template and never the query string: a query could carry personal data.
            access_log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status_holder["status"],
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)

    def _too_large(self) -> str:
        return f"The request body exceeds the limit of {self.max_body_bytes} bytes."

    def _precheck(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if method not in _BODY_METHODS:
            return None
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return 413, self._too_large()
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if has_body and not _JSON_TYPES.match(ctype) and ctype != "application/graphql":
            return 415, "Send the body as application/json."
        return None

    async def _send_problem(self, send: Send, status: int, detail: str) -> None:
        body = json.dumps(problem_body(HTTP_PROBLEMS[status], detail)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "unmatched"
