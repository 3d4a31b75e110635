"""Benchmark: ``POST /v1/referrals`` (decision, audit, encryption, referral, event, outbox) over real HTTP.

Starts a fresh embedded PostgreSQL in a temp dir with the demo registry (``bench.server.HubUnderTest``),
runs ``hub serve`` on loopback in a subprocess with its in-process delivery worker off (production runs
``hub worker`` apart; ``python -m bench delivery`` measures delivery), points the receiver's (BUP's)
endpoint at the ``mailbox`` adapter, records through the API one consent per benchmark child (the
referral's categories, from any elevhälsa to BUP, for ``remiss``), then drives a closed-loop load
generator (``bench.load``): every request is a new referral with its own ``Idempotency-Key`` and a body
like ``tests/referrals/helpers.py::referral_body()``. Before measuring it settles the fresh database (a few
seconds of referrals, then ANALYZE, as autovacuum does on a running hub; ``--no-analyze`` skips it). It
prints throughput, p50/p90/p99 latency with the concurrency of each, and where the CPU went.

In the same run it starts two yardsticks the same way, each on its own fresh database, measures them at 32
clients and prints the hub's throughput as a share of each, with CPU per request beside req/s: the hub's own
statements without the hub's work around them (``bench.baseline``: the same five inserts, nothing else), and
a truly minimal FastAPI + asyncpg service doing three plain inserts per POST — referral, event, outbox; no
audit, no triggers (``bench.baseline_minimal``).

Targets: ≥ 1,000 referrals/s at 32 concurrent clients; p99 ≤ 25 ms at 8 concurrent clients; the hub at
≥ 40 % of the hub-statements yardstick and ≥ 50 % of the minimal service (issue #11); one sending
organisation ≥ 90 % of twelve at 32 clients (issue #11: with ``--senders 1``, the default, 32 clients are
measured again spread over twelve senders and then on one again, and the one-sender mean compared).

With ``--senders N`` the clients are spread over N elevhälsa units. Before issue #11 each sender's audit
entries formed a hash chain appended under a row lock, so one sender was the hardest case; now appends are
plain inserts sealed off the request path.

    python -m bench referrals [--seconds 5] [--warmup 2] [--concurrency 1,8,32] [--workers 2]
                              [--senders 1] [--children 1] [--pool-size 20] [--no-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench import load, machine
from bench.baseline import yardstick
from bench.baseline_minimal import COUNT as MINIMAL_COUNT
from bench.baseline_minimal import minimal_service
from bench.server import CpuMeter, HubUnderTest, personal_identity_number
from bench.sharing import measure

TARGET_THROUGHPUT = 1_000  # referrals/s at 32 clients
TARGET_P99_MS = 25.0  # at 8 clients
TARGET_SHARE_OF_BASELINE = 0.40  # of the hub-statements yardstick (bench.baseline), at 32 clients
TARGET_SHARE_OF_MINIMAL = 0.50  # of the three-insert minimal service (bench.baseline_minimal), at 32 clients
TARGET_ONE_SENDER_SHARE = 0.90  # one sending organisation's throughput of twelve's, at 32 clients
RECEIVER = "region-bup"
MUNICIPALITIES = [
    "nora", "orebro", "kumla", "askersund", "degerfors", "hallsberg",
    "hallefors", "karlskoga", "laxa", "lekeberg", "lindesberg", "ljusnarsberg",
]  # fmt: skip
SENDERS = [f"{m}-elevhalsa" for m in MUNICIPALITIES]
CATEGORIES = ["identity", "school-situation", "concern-text", "health"]


def children(count: int) -> list[str]:
    """Fictional personal identity numbers of ``count`` children aged 11."""
    if not 1 <= count <= 900:
        raise ValueError("1 to 900 children (three-digit serial numbers)")
    return [personal_identity_number(11, serial=100 + i) for i in range(count)]


def consent_body(pin: str) -> dict[str, Any]:
    """A consent covering the referral's categories, from any elevhälsa to BUP, for ``remiss``."""
    now = datetime.now(UTC)
    return {
        "child": {"personal_identity_number": pin},
        "guardian_count": 2,
        "grantors": [{"role": "guardian", "reference": "vh1"}, {"role": "guardian", "reference": "vh2"}],
        "data_categories": [*CATEGORIES, "wellbeing-assessment"],
        "from_parties": {"organisation_types": ["elevhalsa"]},
        "to_parties": {"organisation_types": ["bup"]},
        "purposes": ["remiss"],
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=180)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "elevhalsa-journal:2026/1142",
    }


def referral_body(pin: str) -> dict[str, Any]:
    """As ``tests/referrals/helpers.py::referral_body()``, for the child ``pin``."""
    return {
        "kind": "remiss",
        "target": {"organisation_id": RECEIVER},
        "child": {"personal_identity_number": pin},
        "concern": {
            "dimensions": ["healthy"],
            "local_codes": {"system": "variant-behovskompassen", "codes": ["trygghet"]},
            "trappan_step": 2,
            "text": "Oro för sömn och skolfrånvaro sedan i höstas.",
        },
        "data_categories": CATEGORIES,
        "information": {
            "school-situation": {"attendance_percent": 62, "class": "4B"},
            "health": {"note": "Skolsköterskan: huvudvärk"},
        },
    }


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _set_endpoints(url: str, endpoints: dict[str, tuple[str, dict[str, Any]]]) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction():
            for org, (adapter, config) in endpoints.items():
                await conn.execute("update endpoint set active = false where organisation_id = $1", org)
                await conn.execute(
                    "insert into endpoint (id, organisation_id, adapter, config) values ($1, $2, $3, $4::jsonb)",
                    uuid.uuid4(),
                    org,
                    adapter,
                    json.dumps(config),
                )
    finally:
        await conn.close()


async def _disable_triggers(url: str, table: str) -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        names: list[str] = [
            r[0]
            for r in await conn.fetch(
                "select tgname from pg_trigger where tgrelid = $1::regclass and not tgisinternal", table
            )
        ]
        for name in names:
            await conn.execute(f'alter table {table} disable trigger "{name}"')
        return names
    finally:
        await conn.close()


def disable_referral_triggers(hub: HubUnderTest) -> list[str]:
    """Diagnostic only: switch off the user triggers on ``referral`` and ``referral_event`` (the flow
    rollups') in this benchmark's database, to see what they cost. Figures measured so are not the hub's."""
    tables = ("referral", "referral_event")
    return [name for table in tables for name in asyncio.run(_disable_triggers(hub.owner_url, table))]


def set_endpoints(hub: HubUnderTest, endpoints: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Point organisations' deliveries somewhere (as ``tests/referrals/helpers.py::set_endpoint``)."""
    asyncio.run(_set_endpoints(hub.url, endpoints))


def record_consents(hub: HubUnderTest, pins: Sequence[str]) -> None:
    token = hub.token(SENDERS[0], "system")
    for pin in pins:
        status, raw = hub.request("POST", "/v1/consents", token=token, body=json.dumps(consent_body(pin)).encode())
        if status != 201:
            raise RuntimeError(f"recording a consent failed: {status} {raw[:500]!r}")


def check_send(hub: HubUnderTest, token: str, pin: str) -> dict[str, Any]:
    """One referral by hand (and its replay): 202, the same id again, the categories permitted."""
    key = f"check-{uuid.uuid4().hex}"
    answers = []
    for _ in range(2):
        status, raw, replayed = _post_referral(hub, token, key, referral_body(pin))
        if status != 202:
            raise RuntimeError(f"unexpected answer: {status} {raw[:800]!r}")
        answers.append((json.loads(raw), replayed))
    (first, was), (again, now_replayed) = answers
    if was or not now_replayed or first["id"] != again["id"]:
        raise RuntimeError(f"the replay did not answer the same referral: {answers}")
    status, raw = hub.request("GET", first["href"], token=token)
    if status != 200:
        raise RuntimeError(f"reading the referral failed: {status} {raw[:500]!r}")
    read: dict[str, Any] = json.loads(raw)
    return read


def _post_referral(hub: HubUnderTest, token: str, key: str, body: dict[str, Any]) -> tuple[int, bytes, bool]:
    import http.client

    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    try:
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}", "Idempotency-Key": key}
        conn.request("POST", "/v1/referrals", body=json.dumps(body).encode(), headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("idempotent-replayed") == "true"
    finally:
        conn.close()


def referral_requests(
    host: str, tokens: Sequence[str], pins: Sequence[str], *, tag: str, path: str = "/v1/referrals"
) -> load.RequestFactory:
    """Client ``c`` sends as sender ``c mod len(tokens)``, each request about the next child in turn; every
    request has its own ``Idempotency-Key`` (``tag``-client-n, ``tag`` made unique per call): a key used
    twice would be a replay, which the hub answers without deciding or writing anything."""
    tag = f"{tag}-{uuid.uuid4().hex[:12]}"
    requests: list[tuple[bytes, bytes]] = []  # (head up to the key's value, the rest) per (sender, child)
    for token in tokens:
        for pin in pins:
            body = json.dumps(referral_body(pin), separators=(",", ":")).encode()
            head = (
                f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nauthorization: Bearer {token}\r\nidempotency-key: "
            )
            requests.append((head.encode("latin-1"), b"\r\n\r\n" + body))
    children_ = len(pins)

    def make(client: int, n: int) -> bytes:
        head, rest = requests[(client % len(tokens)) * children_ + (client + n) % children_]
        return head + f"{tag}-{client}-{n}".encode() + rest

    return make


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow(
            """
            select (select count(*) from referral) as referrals,
                   (select count(*) from referral_event) as events,
                   (select count(*) from outbox) as outbox,
                   (select count(*) from sharing_decision where not dry_run) as decisions,
                   (select count(*) from audit_event where action = 'referral-sent') as audited
            """
        )
        return dict(row)
    finally:
        await conn.close()


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def other_cores(meter: CpuMeter, result: load.LoadResult) -> float:
    """Cores that processes other than the server, PostgreSQL and the generator used in the window."""
    (h0, p0, s0), (h1, p1, s1) = meter.readings["start"], meter.readings["end"]
    busy = (s1 - s0) - (h1 - h0) - (p1 - p0) - result.generator_cpu_seconds
    return max(0.0, busy) / result.seconds


def measure_quiet(
    server: HubUnderTest,
    requests: Callable[[], load.RequestFactory],
    concurrency: int,
    args: argparse.Namespace,
    label: str = "",
    count_sql: str = "select count(*) from referral",
) -> tuple[load.LoadResult, CpuMeter]:
    """``bench.sharing.measure``, again (up to ``--attempts`` in all) while other processes on the machine
    used more than ``--max-other`` cores in the window: a shared two-core machine is not always quiet.
    ``requests()`` makes each attempt's requests (new Idempotency-Keys every time)."""
    for attempt in range(1, args.attempts + 1):
        before = asyncio.run(_count(server.owner_url, count_sql))
        result, meter = measure(server, requests(), concurrency, seconds=args.seconds, warmup=args.warmup)
        written = asyncio.run(_count(server.owner_url, count_sql)) - before
        if written < result.completed - result.errors:
            raise RuntimeError(f"{result.completed} requests wrote only {written} referrals: replays?")
        other = other_cores(meter, result)
        if other <= args.max_other or attempt == args.attempts:
            return result, meter
        print(
            f"  ({label}{result.throughput:,.0f} req/s at {concurrency} clients while other processes used "
            f"{other:.2f} cores: measuring again)"
        )
    raise AssertionError("unreachable")


def report(result: load.LoadResult, meter: CpuMeter, seconds: float) -> None:
    print(result.summary())
    print("  " + meter.line(seconds, result.generator_cpu_seconds))
    (h0, p0, _), (h1, p1, _) = meter.readings["start"], meter.readings["end"]
    done = max(1, result.completed)
    print(
        f"  {result.throughput:,.0f} req/s; CPU per request: server {(h1 - h0) * 1000 / done:.2f} ms, "
        f"postgres {(p1 - p0) * 1000 / done:.2f} ms"
    )
    if result.errors:
        print(f"  first error: {result.first_error}")


def settle(hub: HubUnderTest, tokens: Sequence[str], pins: Sequence[str], args: argparse.Namespace) -> None:
    """Bring the fresh database to the state of a hub that has run for a minute: some referrals written
    (``--warmup`` seconds at 8 clients, unmeasured), then analysed as autovacuum would have by then
    (``HubUnderTest.analyze``). Without it every figure is of plans made for empty tables."""
    load.run(
        lambda: load.run_load(
            hub.host,
            hub.port,
            referral_requests(f"{hub.host}:{hub.port}", tokens, pins, tag="settle"),
            concurrency=8,
            seconds=max(args.warmup, 1.0),
            warmup=0.0,
        )
    )
    hub.analyze()
    print(f"settled: {max(args.warmup, 1.0):g} s of referrals at 8 clients, then ANALYZE (as autovacuum would)")


def measure_baseline(args: argparse.Namespace, concurrencies: Sequence[int]) -> dict[int, load.LoadResult]:
    """The minimal FastAPI + asyncpg service (``bench.baseline``) on its own fresh database, same way."""
    results: dict[int, load.LoadResult] = {}
    with yardstick(workers=args.workers, pool_size=args.pool_size or 20) as base:
        if args.without_referral_triggers:
            disable_referral_triggers(base)
        tokens = [base.token(s, "system") for s in SENDERS[: args.senders]]
        pins = children(args.children)
        for c in concurrencies:
            result, meter = measure_quiet(
                base,
                lambda: referral_requests(f"{base.host}:{base.port}", tokens, pins, tag="b"),
                c,
                args,
                "minimal service: ",
            )
            print("minimal FastAPI + asyncpg: ", end="")
            report(result, meter, args.seconds)
            results[c] = result
        counts = asyncio.run(_counts(base.url))
        print(f"  minimal service wrote {counts['referrals']:,} referrals, {counts['audited']:,} audit entries")
    return results


def measure_minimal(args: argparse.Namespace, concurrencies: Sequence[int]) -> dict[int, load.LoadResult]:
    """The three-insert minimal service (``bench.baseline_minimal``) on its own fresh database, same way."""
    results: dict[int, load.LoadResult] = {}
    with minimal_service(workers=args.workers, pool_size=args.pool_size or 20) as base:
        tokens = [base.token(s, "system") for s in SENDERS[: args.senders]]
        pins = children(args.children)
        for c in concurrencies:
            result, meter = measure_quiet(
                base,
                lambda: referral_requests(f"{base.host}:{base.port}", tokens, pins, tag="m"),
                c,
                args,
                "minimal service: ",
                count_sql=MINIMAL_COUNT,
            )
            print("minimal FastAPI + asyncpg, three plain inserts: ", end="")
            report(result, meter, args.seconds)
            results[c] = result
    return results


def compare_senders(hub: HubUnderTest, args: argparse.Namespace, first: load.LoadResult) -> bool:
    """32 clients spread over twelve senders, then on one sender again (alternating with the first run):
    one sender's mean as a share of twelve's. True when the target is met."""
    pins = children(args.children)
    runs: dict[int, list[float]] = {1: [first.throughput], len(SENDERS): []}
    for senders in (len(SENDERS), 1):
        tokens = [hub.token(org, "system") for org in SENDERS[:senders]]
        result, meter = measure_quiet(
            hub,
            lambda tokens=tokens, senders=senders: referral_requests(
                f"{hub.host}:{hub.port}", tokens, pins, tag=f"s{senders}"
            ),
            32,
            args,
        )
        print(f"{senders} sender(s): ", end="")
        report(result, meter, args.seconds)
        runs[senders].append(result.throughput)
    one, twelve = sum(runs[1]) / len(runs[1]), runs[len(SENDERS)][0]
    met = one >= TARGET_ONE_SENDER_SHARE * twelve
    print(
        f"one sender / twelve senders at 32 clients: {one:,.0f} (mean of {len(runs[1])} runs) / {twelve:,.0f} "
        f"referrals/s = {one / twelve:.0%} (target ≥ {TARGET_ONE_SENDER_SHARE:.0%}: {'met' if met else 'NOT met'})"
    )
    return met


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench referrals", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per concurrency (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each (default 2)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts (default 1,8,32)")
    parser.add_argument("--workers", type=int, default=2, help="hub serve --workers (default 2)")
    parser.add_argument("--senders", type=int, default=1, help="sending elevhälsa units (default 1)")
    parser.add_argument(
        "--children", type=int, default=100, help="benchmark children, one consent each, in turn (default 100)"
    )
    parser.add_argument("--pool-size", type=int, default=20, help="HUB_DATABASE_POOL_SIZE per worker (default 20)")
    parser.add_argument("--max-overflow", type=int, default=10, help="HUB_DATABASE_MAX_OVERFLOW (default 10)")
    parser.add_argument("--no-baseline", action="store_true", help="skip both yardsticks")
    parser.add_argument("--no-sender-comparison", action="store_true", help="skip one sender vs twelve at 32")
    parser.add_argument(
        "--baseline-concurrency", default="32", help="client counts for the minimal service (default 32)"
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.15,
        help="measure again while other processes use more cores than this (default 0.15)",
    )
    parser.add_argument("--attempts", type=int, default=4, help="measurements at most per concurrency (default 4)")
    parser.add_argument(
        "--without-referral-triggers",
        action="store_true",
        help="diagnostic: disable the triggers on referral and referral_event (flow rollups) in both databases",
    )
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="measure the fresh database's first plans (no settling load and ANALYZE before measuring)",
    )
    parser.add_argument("--keep-log", action="store_true", help="print the server log's last lines at the end")
    args = parser.parse_args(argv)
    if not 1 <= args.senders <= len(SENDERS):
        parser.error(f"--senders must be 1..{len(SENDERS)}")
    if args.children < 1:
        parser.error("--children must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m bench referrals``; exit status 1 if a target is missed."""
    args = _parse(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    for line in machine.describe():
        print(line)
    print(
        f"POST /v1/referrals over HTTP/1.1 keep-alive on loopback; hub serve --workers {args.workers}, "
        f"HUB_DATABASE_POOL_SIZE={args.pool_size}, HUB_DATABASE_MAX_OVERFLOW={args.max_overflow}, "
        "in-process delivery worker off; embedded PostgreSQL; "
        f"{args.senders} sending organisation(s); {args.children} child(ren), "
        f"one consent each; receiver's endpoint: mailbox; every request a new referral (own Idempotency-Key); "
        f"closed loop, {args.warmup:g} s warm-up + {args.seconds:g} s measured"
    )
    ok = True
    hub_results: dict[int, load.LoadResult] = {}
    env = {
        "HUB_DATABASE_POOL_SIZE": str(args.pool_size),
        "HUB_DATABASE_MAX_OVERFLOW": str(args.max_overflow),
        "HUB_SERVE_RUNS_WORKER": "false",
    }
    with HubUnderTest(workers=args.workers, extra_env=env) as hub:
        set_endpoints(hub, {RECEIVER: ("mailbox", {})})
        if args.without_referral_triggers:
            print(f"DIAGNOSTIC: triggers on referral and referral_event disabled: {disable_referral_triggers(hub)}")
        pins = children(args.children)
        record_consents(hub, pins)
        senders = SENDERS[: args.senders]
        tokens = [hub.token(org, "system") for org in senders]
        for token in tokens:
            read = check_send(hub, token, pins[0])
        print(f"check: 202, replay answered the same referral; permitted {read['permitted_categories']}")
        if not args.no_analyze:
            settle(hub, tokens, pins, args)
        for c in concurrencies:
            result, meter = measure_quiet(
                hub, lambda: referral_requests(f"{hub.host}:{hub.port}", tokens, pins, tag="r"), c, args
            )
            hub_results[c] = result
            report(result, meter, args.seconds)
            ok &= not result.errors
            if c == 32:
                met = result.throughput >= TARGET_THROUGHPUT
                ok &= met
                print(f"  target ≥ {TARGET_THROUGHPUT:,} referrals/s at 32 clients: {'met' if met else 'NOT met'}")
            if c == 8:
                met = result.percentile(99) * 1000 <= TARGET_P99_MS
                ok &= met
                print(f"  target p99 ≤ {TARGET_P99_MS:g} ms at 8 clients: {'met' if met else 'NOT met'}")
        if args.senders == 1 and 32 in hub_results and not args.no_sender_comparison:
            ok &= compare_senders(hub, args, hub_results[32])
        counts = asyncio.run(_counts(hub.url))
        print(
            f"written: {counts['referrals']:,} referrals, {counts['events']:,} events, {counts['outbox']:,} outbox "
            f"entries, {counts['decisions']:,} decisions, {counts['audited']:,} referral-sent audit entries"
        )
        if len({counts["referrals"], counts["events"], counts["outbox"], counts["audited"]}) != 1:
            print("  MISMATCH: every referral should have one event, one outbox entry and one audit entry")
            ok = False
        print(hub.verify_audit())
        if args.keep_log:
            print(hub.log_path.read_text()[-2000:])
    if not args.no_baseline:
        baseline_cs = [int(c) for c in args.baseline_concurrency.split(",") if c.strip()]
        ok &= _compare(hub_results, measure_baseline(args, baseline_cs), "minimal service", TARGET_SHARE_OF_BASELINE)
        ok &= _compare(
            hub_results, measure_minimal(args, baseline_cs), "minimal three-insert service", TARGET_SHARE_OF_MINIMAL
        )
    return 0 if ok else 1


def _compare(hub_results: dict[int, Any], yardstick: dict[int, Any], name: str, target: float) -> bool:
    """Print the hub's throughput as a share of a yardstick's at each client count; the target is judged at 32."""
    ok = True
    for c, base in yardstick.items():
        if c in hub_results and base.throughput > 0:
            share = hub_results[c].throughput / base.throughput
            line = (
                f"hub / {name} at {c} clients: {hub_results[c].throughput:,.0f} / "
                f"{base.throughput:,.0f} referrals/s = {share:.0%}"
            )
            if c == 32:
                met = share >= target
                ok &= met
                line += f" (target ≥ {target:.0%}: {'met' if met else 'NOT met'})"
            print(line)
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
