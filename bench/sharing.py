"""Benchmark: ``POST /v1/sharing-decisions`` (decision + its audit entry) over real HTTP.

Starts a fresh embedded PostgreSQL in a temp dir, loads the demo registry, runs ``hub serve`` on
loopback in a subprocess and records, through the API, five consents for one 16-year-old child (one
matching the question; the others: another recipient and purpose, another purpose, not yet valid,
withdrawn). Then a closed-loop load generator (``bench.load``) asks "may Nora's school send identity,
guardians' contact and school situation to BUP for a referral?" at each concurrency, and prints
throughput, p50/p90/p99 latency and where the CPU went (hub, PostgreSQL, generator).

Targets: ≥ 1,500 requests/s at 32 concurrent clients; p99 ≤ 10 ms at 8 concurrent clients.

Then the same load against the yardstick (``bench.baseline``): a minimal FastAPI + asyncpg endpoint that
runs only the decision's two statements (the facts read, the decision row with its audit entry) on its
own fresh database with the same five consents, to show what the framework and the database allow on
this machine before any of the hub's work (``--no-baseline`` skips it).

Every request is a real decision: the hub identifies the child (HMAC pseudonym), loads the consents,
runs the engine, records the decision and appends to the audit chain of the caller's organisation.
With ``--senders N`` the clients are spread over N schools (N audit chains); the default, 1, is the
hardest case: every request appends to the same chain.

    python -m bench sharing [--seconds 5] [--warmup 2] [--concurrency 1,8,32] [--workers 2] [--senders 1]
                            [--no-baseline] [--baseline-concurrency 8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from bench import load
from bench.baseline import yardstick
from bench.server import CpuMeter, HubUnderTest, personal_identity_number

TARGET_THROUGHPUT = 1_500  # requests/s at 32 clients
TARGET_P99_MS = 10.0  # at 8 clients
SCHOOLS = [
    "nora-grundskola",
    "orebro-grundskola",
    "kumla-grundskola",
    "askersund-grundskola",
    "degerfors-grundskola",
    "hallsberg-grundskola",
    "hallefors-grundskola",
    "karlskoga-grundskola",
    "laxa-grundskola",
    "lekeberg-grundskola",
    "lindesberg-grundskola",
    "ljusnarsberg-grundskola",
]
CATEGORIES = ["identity", "guardians-contact", "school-situation", "wellbeing-assessment"]
QUESTION_CATEGORIES = ["identity", "guardians-contact", "school-situation"]


def _consent(pin: str, *, to_types: list[str], purposes: list[str], valid_from: datetime) -> dict[str, object]:
    return {
        "child": {"personal_identity_number": pin},
        "guardian_count": 2,
        "grantors": [
            {"role": "guardian", "reference": "vh1"},
            {"role": "guardian", "reference": "vh2"},
            {"role": "child", "reference": "barnet"},
        ],
        "data_categories": CATEGORIES,
        "from_parties": {"organisation_types": ["grundskola", "elevhalsa"]},
        "to_parties": {"organisation_types": to_types},
        "purposes": purposes,
        "valid_from": valid_from.isoformat(),
        "valid_until": (valid_from + timedelta(days=300)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "journal-doc-4711",
    }


def record_consents(hub: HubUnderTest, pin: str) -> None:
    """Five consents for the child, recorded and (one) withdrawn through the API by Nora's school."""
    token = hub.token("nora-grundskola", "professional")
    now = datetime.now(UTC)
    past = now - timedelta(days=30)
    bodies = [
        _consent(pin, to_types=["socialtjanst-oppenvard"], purposes=["samverkansforfragan"], valid_from=past),
        _consent(pin, to_types=["bup"], purposes=["sip-kallelse"], valid_from=past),
        _consent(pin, to_types=["bup"], purposes=["remiss"], valid_from=now + timedelta(days=30)),  # not yet valid
        _consent(pin, to_types=["bup"], purposes=["remiss"], valid_from=past),  # the one that matches
        _consent(pin, to_types=["bup"], purposes=["remiss"], valid_from=past),  # withdrawn below
    ]
    ids = []
    for body in bodies:
        status, raw = hub.request("POST", "/v1/consents", token=token, body=json.dumps(body).encode())
        if status != 201:
            raise RuntimeError(f"recording a consent failed: {status} {raw[:500]!r}")
        ids.append(json.loads(raw)["id"])
    withdrawal = {"withdrawn_by": "vh2", "reason": "changed their mind"}
    status, raw = hub.request(
        "POST", f"/v1/consents/{ids[-1]}/withdraw", token=token, body=json.dumps(withdrawal).encode()
    )
    if status != 200:
        raise RuntimeError(f"withdrawing a consent failed: {status} {raw[:500]!r}")


async def _insert_consents(url: str, pin: str) -> None:
    """The five consents, as rows, for the yardstick's database (its child is ``k1:`` + the number)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        now = datetime.now(UTC)
        for n in range(5):
            body = _consent(pin, to_types=["bup"], purposes=["remiss"], valid_from=now - timedelta(days=30 - n))
            await conn.execute(
                """
                insert into consent (id, child_pseudonym, recording_organisation, valid_from, valid_until,
                    party_organisations, party_types, document, created_by)
                values ($1, $2, 'nora-grundskola', $3, $4, '{}', '{bup}', $5::jsonb, 'bench')
                """,
                uuid.uuid4(),
                f"k1:{pin}",
                now - timedelta(days=30),
                now + timedelta(days=300),
                json.dumps(body),
            )
    finally:
        await conn.close()


def measure_baseline(args: argparse.Namespace, pin: str, senders: Sequence[str]) -> dict[int, load.LoadResult]:
    """The yardstick (``bench.baseline``) on its own fresh database, the same questions and load."""
    results: dict[int, load.LoadResult] = {}
    with yardstick(workers=args.workers) as base:
        asyncio.run(_insert_consents(base.url, pin))
        requests = _questions(base, pin, {org: base.token(org, "system") for org in senders})
        for c in [int(c) for c in args.baseline_concurrency.split(",") if c.strip()]:
            result, meter = measure(
                base, lambda client, _n: requests[client % len(requests)], c, seconds=args.seconds, warmup=args.warmup
            )
            print("minimal FastAPI + asyncpg: " + result.summary().lstrip())
            print("  " + meter.line(args.seconds, result.generator_cpu_seconds))
            results[c] = result
    return results


def _questions(server: HubUnderTest, pin: str, tokens: dict[str, str]) -> list[bytes]:
    """The prebuilt request of each sender (organisation id -> its token) for ``server``."""
    return [
        load.build_request(
            "POST",
            "/v1/sharing-decisions",
            host=f"{server.host}:{server.port}",
            headers={"authorization": f"Bearer {token}"},
            json_body=question(pin),
        )
        for token in tokens.values()
    ]


def question(pin: str) -> dict[str, object]:
    return {
        "to_organisation": "region-bup",
        "child": {"personal_identity_number": pin},
        "purpose": "remiss",
        "data_categories": QUESTION_CATEGORIES,
    }


def check_answer(hub: HubUnderTest, pin: str, token: str) -> dict[str, object]:
    """One request by hand: the answer must be an allowance on the matching consent."""
    status, raw = hub.request("POST", "/v1/sharing-decisions", token=token, body=json.dumps(question(pin)).encode())
    answer: dict[str, object] = json.loads(raw)
    if status != 200 or not answer.get("allowed") or answer.get("legal_basis") != "consent":
        raise RuntimeError(f"unexpected answer: {status} {raw[:800]!r}")
    return answer


def measure(
    hub: HubUnderTest, request: load.RequestFactory, concurrency: int, *, seconds: float, warmup: float
) -> tuple[load.LoadResult, CpuMeter]:
    """One closed-loop run against ``hub``, with the CPU each party used in the measured window."""
    meter = CpuMeter(hub)
    result = load.run(
        lambda: load.run_load(
            hub.host,
            hub.port,
            request,
            concurrency=concurrency,
            seconds=seconds,
            warmup=warmup,
            on_window=meter.mark,
        )
    )
    assert isinstance(result, load.LoadResult)
    return result, meter


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench sharing", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per concurrency (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each (default 2)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts (default 1,8,32)")
    parser.add_argument("--workers", type=int, default=2, help="hub serve --workers (default 2)")
    parser.add_argument("--senders", type=int, default=1, help="sending schools = audit chains (default 1)")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=20,
        help="HUB_DATABASE_POOL_SIZE per worker (default 20; 0: the hub's default)",
    )
    parser.add_argument("--keep-log", action="store_true", help="print the server log's last lines at the end")
    parser.add_argument("--no-baseline", action="store_true", help="skip the minimal FastAPI + asyncpg service")
    parser.add_argument(
        "--baseline-concurrency", default="8,32", help="client counts for the minimal service (default 8,32)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.senders <= len(SCHOOLS):
        parser.error(f"--senders must be 1..{len(SCHOOLS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m bench sharing``; exit status 1 if a target is missed."""
    args = _parse(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    pin = personal_identity_number(16)
    print(
        f"POST /v1/sharing-decisions over HTTP/1.1 keep-alive on loopback; hub serve --workers {args.workers}; "
        f"embedded PostgreSQL; 5 consents for the child; {args.senders} sending organisation(s) "
        f"= {args.senders} audit chain(s); closed loop, {args.warmup:g} s warm-up + {args.seconds:g} s measured"
    )
    ok = True
    results: dict[int, load.LoadResult] = {}
    env = {"HUB_DATABASE_POOL_SIZE": str(args.pool_size)} if args.pool_size else {}
    with HubUnderTest(workers=args.workers, extra_env=env) as hub:
        record_consents(hub, pin)
        senders = SCHOOLS[: args.senders]
        tokens = {org: hub.token(org, "system") for org in senders}
        for org in senders:
            check_answer(hub, pin, tokens[org])
        requests = _questions(hub, pin, tokens)

        def request_for(client: int, _n: int) -> bytes:
            return requests[client % len(requests)]

        for c in concurrencies:
            result, meter = measure(hub, request_for, c, seconds=args.seconds, warmup=args.warmup)
            results[c] = result
            print(result.summary())
            print("  " + meter.line(args.seconds, result.generator_cpu_seconds))
            if result.errors:
                print(f"  first error: {result.first_error}")
                ok = False
            if c == 32:
                met = result.throughput >= TARGET_THROUGHPUT
                ok &= met
                print(f"  target ≥ {TARGET_THROUGHPUT:,} req/s at 32 clients: {'met' if met else 'NOT met'}")
            if c == 8:
                met = result.percentile(99) * 1000 <= TARGET_P99_MS
                ok &= met
                print(f"  target p99 ≤ {TARGET_P99_MS:g} ms at 8 clients: {'met' if met else 'NOT met'}")
        print(hub.verify_audit())
        if args.keep_log:
            print(hub.log_path.read_text()[-2000:])
    if not args.no_baseline:
        for c, base in measure_baseline(args, pin, SCHOOLS[: args.senders]).items():
            if c in results and base.throughput > 0:
                hub_rate = results[c].throughput
                print(
                    f"hub / minimal service at {c} clients: {hub_rate:,.0f} / {base.throughput:,.0f} req/s "
                    f"= {hub_rate / base.throughput:.0%}"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
