"""Benchmark: end-to-end delivery, outbox → ``hub worker`` → webhook → a receiving server on loopback.

Starts a fresh embedded PostgreSQL with the demo registry and ``hub serve`` (``bench.server.HubUnderTest``,
its in-process worker off), and a receiving server (``python -m bench.delivery receive``: raw asyncio
HTTP/1.1 on uvloop, keep-alive, in its own process) that checks every request's ``Hub-Signature`` with
``hub.adapters.webhook.verify_signature`` (``--no-verify``: it checks nothing), keeps one id per
``Idempotency-Key`` and answers ``200 {"id": ...}``. BUP's endpoint and the senders' are pointed at it
(webhook adapter, signing secret ``bench-webhook``). Then it preloads ``--referrals`` referrals through
``POST /v1/referrals`` (each allowed by a consent: ``bench.referrals``), so each waits in the outbox, and
only then starts ``--workers`` ``hub worker`` processes with the settings given, and waits until every
referral is delivered.

Throughput is the referrals delivered between the first and the last delivery (the outbox's
``delivered_at``), so the workers' start-up is left out; the time from starting them to the last delivery
is printed too. Each delivery also makes the referral ``received`` and queues that status event for the
sender, which the same workers deliver as well (to the same receiver): that is counted apart.

First it measures httpx alone against the receiver (POSTs per second and CPU per POST): the floor under
the two POSTs every referral and its status event need, whatever the worker does besides.

Target: ≥ 500 referrals/s delivered.

    python -m bench delivery [--referrals 5000] [--workers 2] [--batch-size 40] [--in-flight 8] [--pool-size 20]
                             [--senders 4] [--no-verify] [--log-level INFO] [--yardstick] [--outage SECONDS]

``--outage SECONDS`` measures a receiver that is down instead (``bench.delivery_outage``): the time the
queue needs to drain once it is back against the time the same queue needs at full speed, and the
attempts made while it was down.

``--yardstick`` starts as many ``bench.baseline_worker`` processes in place of ``hub worker``: the same
claim, send-time decision with its audit entry, signed POSTs and outcome statements, and nothing else
(what this machine allows before any of the worker's own work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from bench import load, machine
from bench.referrals import (
    RECEIVER,
    SENDERS,
    asyncpg_dsn,
    check_send,
    children,
    record_consents,
    referral_requests,
    set_endpoints,
)
from bench.server import HubUnderTest, free_port, pythonpath, system_cpu_seconds, tree_cpu_seconds

TARGET_THROUGHPUT = 500  # referrals/s delivered
SECRET_REF = "bench-webhook"
SECRET = "bench-webhook-secret-0123456789abcdef"


# --- the receiving server --------------------------------------------------------------------------------


class _Receiver(asyncio.Protocol):
    """HTTP/1.1 with content-length bodies only (what httpx sends); one connection each."""

    def __init__(self, state: dict[str, Any], verify: bool) -> None:
        self.state = state
        self.verify = verify
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's TCPTransport is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            status, answer = self.handle(lines[0].split(" ")[:2], headers, body)
            payload = json.dumps(answer).encode()
            assert self.transport is not None
            self.transport.write(
                f"HTTP/1.1 {status} {'OK' if status == 200 else 'Unauthorized'}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n".encode()
                + payload
            )

    def handle(self, request_line: list[str], headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        from hub.adapters.webhook import SignatureError, verify_signature

        state = self.state
        if request_line[0] == "GET":  # GET /stats
            return 200, {k: v for k, v in state.items() if k != "seen"}
        state["requests"] += 1
        if self.verify:
            try:
                verify_signature(SECRET, headers.get("hub-signature"), body, now=time.time())
            except SignatureError:
                state["bad_signatures"] += 1
                return 401, {"error": "bad signature"}
        key = headers.get("idempotency-key", "")
        seen: dict[str, int] = state["seen"]
        if key in seen:
            state["duplicates"] += 1
        else:
            seen[key] = len(seen) + 1
            kind = headers.get("hub-message-kind", "")
            state[kind] = state.get(kind, 0) + 1
        return 200, {"id": f"case-{seen[key]}"}


def receive(port: int, verify: bool) -> None:
    """Serve until SIGTERM (``python -m bench.delivery receive``)."""
    loop = load.new_event_loop()
    asyncio.set_event_loop(loop)
    state: dict[str, Any] = {"requests": 0, "bad_signatures": 0, "duplicates": 0, "seen": {}}
    server = loop.run_until_complete(loop.create_server(lambda: _Receiver(state, verify), "127.0.0.1", port))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


class ReceiverProcess:
    def __init__(self, *, verify: bool, port: int | None = None) -> None:
        self.port = port or free_port()  # a given port: a receiver coming back where it was
        cmd = [sys.executable, "-m", "bench.delivery", "receive", "--port", str(self.port)]
        if not verify:
            cmd.append("--no-verify")
        env = {**os.environ, "PYTHONPATH": pythonpath()}
        self.process = subprocess.Popen(cmd, env=env, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError("the receiving server did not start")

    def stats(self) -> dict[str, Any]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/stats")
            stats: dict[str, Any] = json.loads(conn.getresponse().read())
            return stats
        finally:
            conn.close()

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


# --- the benchmark ---------------------------------------------------------------------------------------


def httpx_floor(port: int, *, requests: int = 5000, in_flight: int = 8) -> tuple[float, float]:
    """httpx alone, as a worker uses it (one client, ``in_flight`` pooled connections), POSTing a body of a
    referral's size to the receiver: requests per second and this process's CPU seconds per request. A
    referral with its status event is two such requests, whatever else the worker does."""
    import resource

    import httpx

    async def run() -> tuple[float, float]:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            gate = asyncio.Semaphore(in_flight)
            body = b"{" + b" " * 1500 + b"}"

            async def one(i: int) -> None:
                async with gate:
                    response = await client.post(
                        f"http://127.0.0.1:{port}/floor", content=body, headers={"Idempotency-Key": f"floor-{i}"}
                    )
                    response.raise_for_status()
                    response.json()

            await asyncio.gather(*(one(i) for i in range(200)))  # connections open, code warm
            began, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            await asyncio.gather(*(one(i) for i in range(200, 200 + requests)))
            after, took = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - began
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            return requests / took, cpu / requests

    return asyncio.run(run())


def preload(hub: HubUnderTest, senders: Sequence[str], count: int, children_: int = 100) -> float:
    """``count`` referrals through the API (16 clients) about ``children_`` children in turn, each with a
    consent; returns the seconds it took."""
    pins = children(children_)
    record_consents(hub, pins)
    tokens = [hub.token(org, "system") for org in senders]
    request = referral_requests(f"{hub.host}:{hub.port}", tokens, pins, tag="preload")
    began = time.perf_counter()
    result = load.run(
        lambda: load.run_load(hub.host, hub.port, request, concurrency=16, seconds=3600, warmup=0.0, max_requests=count)
    )
    assert isinstance(result, load.LoadResult)
    if result.errors or result.completed != count:
        raise RuntimeError(f"preloading failed: {result.completed} of {count}, first error {result.first_error}")
    return time.perf_counter() - began


async def _progress(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow(
            """
            select count(*) filter (where kind = 'referral' and state = 'delivered') as referrals,
                   count(*) filter (where kind = 'referral' and state not in ('delivered', 'queued', 'retrying'))
                       as failed_referrals,
                   count(*) filter (where kind = 'referral' and attempts > 1) as retried,
                   count(*) filter (where kind = 'status-event') as events,
                   count(*) filter (where kind = 'status-event' and state = 'delivered') as events_delivered,
                   min(delivered_at) filter (where kind = 'referral') as first_at,
                   max(delivered_at) filter (where kind = 'referral') as last_at,
                   max(delivered_at) as last_any_at
            from outbox
            """
        )
        received = await conn.fetchval("select count(*) from referral where status = 'received'")
        return {**dict(row), "received": received}
    finally:
        await conn.close()


def progress(hub: HubUnderTest) -> dict[str, Any]:
    return asyncio.run(_progress(hub.url))


def start_workers(hub: HubUnderTest, count: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    base = {**hub.hub_env(), **env}
    return _spawn(hub, "worker", count, [sys.executable, "-c", "from hub.cli import main; main()", "worker"], base)


def start_yardsticks(
    hub: HubUnderTest, count: int, args: argparse.Namespace, receiver: str
) -> list[subprocess.Popen[bytes]]:
    """``count`` yardstick workers (``bench.baseline_worker``) in place of ``hub worker``."""
    command = [sys.executable, "-m", "bench.baseline_worker", "--dsn", asyncpg_dsn(hub.url), "--receiver", receiver]
    command += ["--secret", SECRET, "--batch-size", str(args.batch_size), "--in-flight", str(args.in_flight)]
    return _spawn(hub, "yardstick", count, command, {**os.environ, "PYTHONPATH": pythonpath()})


def _spawn(
    hub: HubUnderTest, name: str, count: int, command: list[str], env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    """``count`` processes of ``command``, each logging to ``<name>-<i>.log`` in the hub's directory."""
    processes = []
    for i in range(count):
        log = (hub.tmp / f"{name}-{i}.log").open("wb")
        processes.append(
            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
    return processes


def stop_workers(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench delivery", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    rcv = sub.add_parser("receive", help="run the receiving server (used by the benchmark)")
    rcv.add_argument("--port", type=int, required=True)
    rcv.add_argument("--no-verify", action="store_true")
    parser.add_argument("--referrals", type=int, default=5000, help="referrals to deliver (default 5000)")
    parser.add_argument("--workers", type=int, default=2, help="hub worker processes (default 2)")
    parser.add_argument("--batch-size", type=int, default=40, help="HUB_WORKER_BATCH_SIZE (default 40)")
    parser.add_argument("--in-flight", type=int, default=8, help="HUB_WORKER_CONCURRENCY (default 8)")
    parser.add_argument("--pool-size", type=int, default=20, help="HUB_DATABASE_POOL_SIZE per worker (default 20)")
    parser.add_argument("--max-overflow", type=int, default=10, help="HUB_DATABASE_MAX_OVERFLOW (default 10)")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="HUB_WORKER_POLL_INTERVAL_SECONDS (0.2)")
    parser.add_argument("--senders", type=int, default=4, help="sending elevhälsa units (default 4)")
    parser.add_argument("--children", type=int, default=100, help="children, one consent each (default 100)")
    parser.add_argument("--no-verify", action="store_true", help="the receiver checks no signatures")
    parser.add_argument("--log-level", default="INFO", help="HUB_LOG_LEVEL of the workers (default INFO)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (600)")
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        help="SECONDS: measure a receiver down this long instead (bench.delivery_outage)",
    )
    parser.add_argument(
        "--yardstick",
        action="store_true",
        help="run the yardstick (bench.baseline_worker: the same statements and requests, nothing else) "
        "in place of hub worker",
    )
    args = parser.parse_args(argv)
    if args.command is None and not 1 <= args.senders <= len(SENDERS):
        parser.error(f"--senders must be 1..{len(SENDERS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m bench delivery``; exit status 1 if the target is missed."""
    args = _parse(argv)
    if args.command == "receive":
        receive(args.port, not args.no_verify)
        return 0
    for line in machine.describe():
        print(line)
    settings = worker_settings(args)
    if args.outage:
        from bench.delivery_outage import run_outage

        return run_outage(args, settings)
    return _throughput(args, settings)


def worker_settings(args: argparse.Namespace) -> dict[str, str]:
    """The environment of the ``hub worker`` processes: the options given, the receiver's secret."""
    return {
        "HUB_WORKER_BATCH_SIZE": str(args.batch_size),
        "HUB_WORKER_CONCURRENCY": str(args.in_flight),
        "HUB_DATABASE_POOL_SIZE": str(args.pool_size),
        "HUB_DATABASE_MAX_OVERFLOW": str(args.max_overflow),
        "HUB_WORKER_POLL_INTERVAL_SECONDS": str(args.poll_interval),
        "HUB_LOG_LEVEL": args.log_level,
        "HUB_SECRET_" + SECRET_REF.upper().replace("-", "_"): SECRET,
    }


def _throughput(args: argparse.Namespace, settings: dict[str, str]) -> int:
    who = "yardstick worker (bench.baseline_worker)" if args.yardstick else "`hub worker`"
    print(
        f"delivery of {args.referrals:,} referrals: {args.workers} {who} process(es) with "
        + ", ".join(f"{k}={v}" for k, v in settings.items() if "SECRET" not in k)
        + "; webhook adapter to a raw asyncio receiver on loopback that "
        + ("verifies every signature" if not args.no_verify else "verifies nothing")
        + f"; {args.senders} sender(s), {args.children} children; embedded PostgreSQL"
    )
    receiver = ReceiverProcess(verify=False)
    try:
        rate, cpu = httpx_floor(receiver.port)
    finally:
        receiver.close()
    print(
        f"httpx alone (one client, {args.in_flight} connections, to the receiver not verifying): {rate:,.0f} POSTs/s, "
        f"{cpu * 1000:.2f} ms of CPU per POST; a referral with its status event is two"
    )
    receiver = ReceiverProcess(verify=not args.no_verify)
    ok = True
    try:
        env = {"HUB_SERVE_RUNS_WORKER": "false", "HUB_DATABASE_POOL_SIZE": str(args.pool_size)}
        with HubUnderTest(workers=2, extra_env=env) as hub:
            senders = SENDERS[: args.senders]
            url = f"http://127.0.0.1:{receiver.port}"
            endpoints = {RECEIVER: ("webhook", {"url": f"{url}/bup", "secret_ref": SECRET_REF})}
            endpoints |= {s: ("webhook", {"url": f"{url}/{s}", "secret_ref": SECRET_REF}) for s in senders}
            set_endpoints(hub, endpoints)
            seconds = preload(hub, senders, args.referrals, args.children)
            check_send(hub, hub.token(senders[0], "system"), children(1)[0])  # one more, and its replay
            total = args.referrals + 1
            print(f"preloaded {total:,} referrals through POST /v1/referrals in {seconds:.1f} s; all queued")
            db0, sys0, rcv0 = hub.database_cpu_seconds(), system_cpu_seconds(), receiver.cpu_seconds()
            started = time.perf_counter()
            if args.yardstick:
                workers = start_yardsticks(hub, args.workers, args, url)
            else:
                workers = start_workers(hub, args.workers, settings)
            try:
                state = progress(hub)
                deadline = started + args.timeout
                while state["referrals"] + state["failed_referrals"] < total and time.perf_counter() < deadline:
                    time.sleep(0.2)
                    state = progress(hub)
                all_done = time.perf_counter() - started
                while state["events_delivered"] < state["events"] and time.perf_counter() < deadline:
                    time.sleep(0.2)
                    state = progress(hub)
                workers_cpu = sum(tree_cpu_seconds(p.pid) for p in workers)
                db1, sys1, rcv1 = hub.database_cpu_seconds(), system_cpu_seconds(), receiver.cpu_seconds()
                wall = time.perf_counter() - started
            finally:
                stop_workers(workers)
            ok = _report(args, state, all_done, wall, total, receiver.stats())
            other = max(0.0, (sys1 - sys0) - workers_cpu - (db1 - db0) - (rcv1 - rcv0)) / wall
            print(
                f"CPU from the workers' start to the end ({wall:.1f} s): workers {workers_cpu / wall:.2f} cores, "
                f"postgres {(db1 - db0) / wall:.2f}, receiver {(rcv1 - rcv0) / wall:.2f}, other processes "
                f"{other:.2f} (machine {(sys1 - sys0) / wall:.2f} of {os.cpu_count()}); per referral with its "
                f"status event: workers {workers_cpu / total * 1000:.1f} ms, postgres "
                f"{(db1 - db0) / total * 1000:.1f} ms"
            )
            if not args.yardstick:  # the yardstick's audit entries hash a stand-in content, not their columns
                print(hub.verify_audit())
    finally:
        receiver.close()
    return 0 if ok else 1


def _report(
    args: argparse.Namespace, state: dict[str, Any], all_done: float, wall: float, total: int, stats: dict[str, Any]
) -> bool:
    first: datetime | None = state["first_at"]
    last: datetime | None = state["last_at"]
    delivered = state["referrals"]
    span = (last - first).total_seconds() if first and last else 0.0
    rate = (delivered - 1) / span if span > 0 else 0.0
    print(
        f"delivered {delivered:,} of {total:,} referrals ({state['failed_referrals']} failed, "
        f"{state['retried']} needed more than one attempt); {state['received']:,} now 'received'"
    )
    print(
        f"throughput: {rate:,.0f} referrals/s delivered (first to last delivery, {span:.2f} s); "
        f"{all_done:.2f} s from starting the workers to the last referral delivered"
    )
    print(
        f"status events back to the senders: {state['events_delivered']:,} of {state['events']:,} delivered; "
        f"everything delivered {wall:.2f} s after starting the workers"
    )
    print(
        f"receiver: {stats['requests']:,} requests, {stats.get('referral', 0):,} referrals and "
        f"{stats.get('status-event', 0):,} status events (distinct Idempotency-Keys), "
        f"{stats['duplicates']} duplicates, {stats['bad_signatures']} bad signatures"
    )
    met = delivered == total and rate >= TARGET_THROUGHPUT and not stats["bad_signatures"]
    print(f"  target ≥ {TARGET_THROUGHPUT} referrals/s delivered: {'met' if met else 'NOT met'}")
    return met


if __name__ == "__main__":
    raise SystemExit(main())
