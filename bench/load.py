"""A lean closed-loop HTTP/1.1 load generator: raw asyncio streams, keep-alive, one connection per client.

Closed loop: each of ``concurrency`` clients sends a request, waits for the whole response, and sends the
next at once, so the offered load adapts to the server and never exceeds ``concurrency`` requests in
flight. Latency is measured per request from the first byte written to the last byte read; above a few
clients on a two-core machine most of it is time spent queueing behind the other clients' requests.

It runs in the benchmark's own process and competes with the server for the CPU, so it is kept cheap:
each request is a prebuilt ``bytes`` object, the response parser reads the status line and
``content-length`` only, and the CPU it used during the measured window is reported
(:attr:`LoadResult.generator_cpu_seconds`). HTTP/1.1 responses with ``content-length`` only (what uvicorn
sends for JSON); anything else is an error. Loopback targets only.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

RequestFactory = Callable[[int, int], bytes]  # (client index, request number) -> request bytes


def build_request(
    method: str,
    path: str,
    *,
    host: str,
    headers: Mapping[str, str] | None = None,
    json_body: object | None = None,
) -> bytes:
    """A complete HTTP/1.1 keep-alive request as bytes."""
    body = b"" if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    if json_body is not None:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class LoadResult:
    concurrency: int
    seconds: float  # length of the measured window
    completed: int  # responses completed inside the window
    errors: int  # non-2xx responses inside the window
    latencies: list[float] = field(repr=False)  # seconds, requests started inside the window
    generator_cpu_seconds: float = 0.0  # CPU this process used inside the window
    first_error: str | None = None
    reconnects: int = 0  # connections the server closed (Connection: close) and the clients opened again

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile latency in seconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank]

    @property
    def generator_cpu_share(self) -> float:
        """The generator's CPU time as a share of one core over the window."""
        return self.generator_cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        ms = 1000.0
        return (
            f"{self.throughput:8,.0f} req/s at {self.concurrency} concurrent clients; "
            f"latency at {self.concurrency} clients p50 {self.percentile(50) * ms:.2f} ms, "
            f"p90 {self.percentile(90) * ms:.2f} ms, p99 {self.percentile(99) * ms:.2f} ms "
            f"({self.completed:,} requests in {self.seconds:.1f} s, {self.errors} errors, "
            f"{self.reconnects} reconnects; generator {self.generator_cpu_share:.0%} of a core)"
        )


class HttpError(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server closes the connection after it (``Connection: close``)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    start = head.find(b"content-length:")
    if start < 0:
        start = head.lower().find(b"content-length:")
        if start < 0:
            raise HttpError("response without content-length")
    end = head.find(b"\r\n", start)
    length = int(head[start + 15 : end])
    body = await reader.readexactly(length) if length else b""
    return status, body, b"\r\nconnection: close\r\n" in head.lower()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(
    host: str,
    port: int,
    request: bytes | RequestFactory,
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
    max_requests: int = 2_000_000,
    on_window: Callable[[str], None] | None = None,
) -> LoadResult:
    """Drive ``concurrency`` closed-loop clients for ``warmup + seconds``; measure the last ``seconds``.

    ``on_window("start")`` and ``on_window("end")`` are called at the measured window's edges (to read
    other processes' CPU time, say). Bounded in time and in count (``max_requests`` in all); stops by
    itself."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the load generator only targets loopback")
    make: RequestFactory = (lambda _c, _n: request) if isinstance(request, bytes) else request
    loop = asyncio.get_running_loop()
    clock = time.perf_counter
    began = clock()
    window_start = began + warmup
    window_end = window_start + seconds
    latencies: list[float] = []
    counters = {"completed": 0, "errors": 0, "sent": 0, "reconnects": 0}
    first_error: list[str] = []
    cpu_marks: dict[str, float] = {}

    def mark_window_start() -> None:
        if on_window is not None:
            on_window("start")
        cpu_marks["start"] = _cpu_seconds()

    def mark_window_end() -> None:
        cpu_marks["end"] = _cpu_seconds()
        if on_window is not None:
            on_window("end")

    loop.call_at(loop.time() + warmup, mark_window_start)
    loop.call_at(loop.time() + warmup + seconds, mark_window_end)

    async def client(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        n = 0
        closed = False
        try:
            while counters["sent"] < max_requests:
                data = make(index, n)
                n += 1
                counters["sent"] += 1
                t0 = clock()
                if t0 >= window_end:
                    return
                if closed:  # as any HTTP/1.1 client does, within the request's time
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    counters["reconnects"] += 1
                writer.write(data)
                status, body, closed = await _read_response(reader)
                t1 = clock()
                if t1 > window_end or t0 < window_start:
                    if t0 < window_start and status >= 300 and not first_error:
                        first_error.append(f"{status} {body[:300]!r}")
                    continue
                latencies.append(t1 - t0)
                counters["completed"] += 1
                if status >= 300:
                    counters["errors"] += 1
                    if not first_error:
                        first_error.append(f"{status} {body[:300]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    if "end" not in cpu_marks:
        mark_window_end()
    return LoadResult(
        concurrency=concurrency,
        seconds=seconds,
        completed=counters["completed"],
        errors=counters["errors"],
        latencies=latencies,
        generator_cpu_seconds=cpu_marks.get("end", 0.0) - cpu_marks.get("start", 0.0),
        first_error=first_error[0] if first_error else None,
        reconnects=counters["reconnects"],
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with ``uvicorn[standard]``): cheaper for the generator too."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(coro_factory: Callable[[], object]) -> object:
    """Run ``coro_factory()`` on a fresh (uv)loop."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro_factory())  # type: ignore[arg-type]
    finally:
        loop.close()


def sweep(
    host: str,
    port: int,
    request: bytes | RequestFactory,
    concurrencies: Sequence[int],
    *,
    seconds: float,
    warmup: float,
) -> list[LoadResult]:
    """One measured run per concurrency, in order, each on a fresh loop and fresh connections."""
    results: list[LoadResult] = []
    for c in concurrencies:
        result = run(lambda c=c: run_load(host, port, request, concurrency=c, seconds=seconds, warmup=warmup))  # type: ignore[misc]
        assert isinstance(result, LoadResult)
        results.append(result)
    return results
