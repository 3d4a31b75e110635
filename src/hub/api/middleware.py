"""Pure ASGI middleware: request ids, input checks, body limit, media type, the 500 problem (503 when the
database is unreachable), response headers, access log and metrics.

Pure ASGI rather than ``BaseHTTPMiddleware`` because it sits on every request's hot path.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.context import clock_var, request_id_var
from hub.api.input_guard import check_headers, check_json_body, check_path, check_query, check_text_body
from hub.api.problems import (
    HTTP_PROBLEMS,
    PROBLEM_JSON,
    BodyTooLarge,
    database_unavailable_response,
    hub_error_response,
    internal_error_response,
    problem_body,
)
from hub.database_availability import is_database_unavailable

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
    """Sets the request id, refuses what no handler may see, answers every unexpected error with a problem,
    adds the response headers every answer carries, logs and measures."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, database_retry_after: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.database_retry_after = database_retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
        clock_token = clock_var.set(None if runtime is None else runtime.clock)
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}
        method = scope["method"]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message["headers"] = _response_headers(message.get("headers", []), request_id)
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapper, headers)
        except BodyTooLarge:
            if not status_holder["started"]:
                await self._send_problem(send_wrapper, 413, self._too_large())
        except Exception as exc:
            if status_holder["started"]:
                raise  # half a response is out: nothing left to answer with
            if is_database_unavailable(exc):
                answer = database_unavailable_response(exc, retry_after=self.database_retry_after)
            else:
                answer = internal_error_response(exc)
            await answer(scope, receive, send_wrapper)
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
            clock_var.reset(clock_token)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        method = scope["method"]
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        early = self._precheck(method, headers, ctype)
        if early is not None:
            await self._send_problem(send, *early)
            return
        refusal = check_headers(scope["headers"]) or check_path(scope) or check_query(scope.get("query_string", b""))
        if refusal is None and method in _BODY_METHODS:
            body = await self._read_body(receive)
            refusal = check_json_body(body) if _JSON_TYPES.match(ctype) else check_text_body(body) if body else None
            receive = _replay(body, receive)
        if refusal is not None:
            await hub_error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, so that it can be checked before any handler reads it (it is small: bounded)."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the handler will see an empty body and nobody reads the answer
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        return limited_receive

    def _too_large(self) -> str:
        return f"The request body exceeds the limit of {self.max_body_bytes} bytes."

    def _precheck(self, method: str, headers: dict[str, str], ctype: str) -> tuple[int, str] | None:
        if method not in _BODY_METHODS:
            return None
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return 413, self._too_large()
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
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


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read ahead, as one message; then the client's own messages (a disconnect, say)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


_NO_STORE = (b"cache-control", b"no-store")


def _response_headers(headers: Iterable[tuple[bytes, bytes]], request_id: str) -> list[tuple[bytes, bytes]]:
    """Every answer names its request; any that does not set its own caching (the public vocabulary does)
    may carry personal data, so no cache, shared or private, keeps it."""
    out = [*headers, (b"x-request-id", request_id.encode())]
    if not any(name.lower() == b"cache-control" for name, _ in headers):
        out.append(_NO_STORE)
    return out


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "unmatched"
