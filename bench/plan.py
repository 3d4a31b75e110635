"""Benchmark: ``POST /v1/children/plan/versions`` to a team of seven (six members besides the author: six
sharing decisions, six shares, six outbox entries, one sealed version, audit entries) over real HTTP.

Starts a fresh embedded PostgreSQL with the demo registry and ``hub serve`` on loopback (its in-process
delivery worker off: the deliveries are queued, ``python -m bench delivery`` measures delivering), points
every member's endpoint at the ``mailbox`` adapter, and builds through the API one team per child: the
school names itself named person, adds social services and five more organisations, appoints social
services lead professional; social services' consent covers three of the six members (the others get a
``plan-notice``). Then each client sends plan versions for its own child (``If-Match: *``: the load
generator cannot know the ETag its previous answer carried), closed loop, and it prints throughput,
p50/p90/p99 latency and CPU per request of the server and of PostgreSQL.

Target (issue #12): none set; recorded in bench/RESULTS.md with p99 at 8 clients.

    python -m bench plan [--seconds 5] [--warmup 2] [--concurrency 1,8] [--workers 2] [--pool-size 20]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import load, machine
from bench.referrals import _count, measure_quiet, report, set_endpoints
from bench.server import HubUnderTest, personal_identity_number
from hub.vocabulary import EXAMPLES_DIR

SCHOOL, SOCIAL = "nora-grundskola", "nora-socialtjanst-myndighet"
OTHERS = ["region-bup", "nora-elevhalsa", "nora-vardcentral", "nora-familjecentral", "nora-bvc"]
CONSENTED = [SCHOOL, "region-bup", "nora-elevhalsa"]
CATEGORIES = ["child-plan", "school-situation", "wellbeing-assessment", "concern-text", "health", "social-services"]


def plan_document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES_DIR / "child-plan-1.0.0.json").read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    doc["schema_version"] = "1.1.0"
    doc["school_situation"] = {"summary": "Närvaro 62 %, särskilt stöd i matematik."}
    doc["health"] = {"summary": "Sömnproblem; utreds av BUP."}
    return doc


def _post(hub: HubUnderTest, path: str, org: str, body: dict[str, Any], expect: int = 201) -> None:
    status, raw = hub.request("POST", path, token=hub.token(org, "system"), body=json.dumps(body).encode())
    if status != expect:
        raise RuntimeError(f"POST {path} as {org}: {status} {raw[:500]!r}")


def build_team(hub: HubUnderTest, pin: str) -> None:
    """The child's team of seven with social services as lead professional, and the consent for three."""
    child = {"personal_identity_number": pin}
    _post(hub, "/v1/children/team/named-person", SCHOOL, {"child": child, "stage": "school"})
    for org in (SOCIAL, *OTHERS):
        body = {"child": child, "organisation_id": org, "reason": "plan"}
        _post(hub, "/v1/children/team/participants", SCHOOL, body)
    _post(hub, "/v1/children/team/lead-professional", SCHOOL, {"child": child, "organisation_id": SOCIAL})
    now = datetime.now(UTC)
    consent = {
        "child": child,
        "guardian_count": 2,
        "grantors": [{"role": "guardian", "reference": "vh1"}, {"role": "guardian", "reference": "vh2"}],
        "data_categories": CATEGORIES,
        "from_parties": {"organisation_ids": [SOCIAL]},
        "to_parties": {"organisation_ids": CONSENTED},
        "purposes": ["samverkansforfragan"],
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=180)).isoformat(),
        "information_given": {"language": "sv", "form": "written"},
        "evidence_reference": "soc-journal:2026/77",
    }
    _post(hub, "/v1/consents", SOCIAL, consent)


def plan_requests(hub: HubUnderTest, pins: Sequence[str]) -> load.RequestFactory:
    """Client ``c`` sends versions for child ``c`` (``If-Match: *``), each request prebuilt."""
    token, document = hub.token(SOCIAL, "system"), plan_document()
    prebuilt = [
        load.build_request(
            "POST",
            "/v1/children/plan/versions",
            host=f"{hub.host}:{hub.port}",
            headers={"authorization": f"Bearer {token}", "if-match": "*"},
            json_body={"child": {"personal_identity_number": pin}, "plan": document},
        )
        for pin in pins
    ]
    return lambda client, _n: prebuilt[client % len(prebuilt)]


async def _counts(url: str) -> dict[str, int]:
    sql = {
        "versions": "select count(*) from plan_version",
        "shares": "select count(*) from plan_share",
        "notices": "select count(*) from plan_share where kind = 'plan-notice'",
        "decisions": "select count(*) from sharing_decision where purpose = 'samverkansforfragan'",
        "outbox": "select count(*) from outbox where plan_share_id is not null",
    }
    return {k: await _count(url, q) for k, q in sql.items()}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench plan", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per concurrency (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each (default 2)")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client counts (default 1,8)")
    parser.add_argument("--workers", type=int, default=2, help="hub serve --workers (default 2)")
    parser.add_argument("--pool-size", type=int, default=20, help="HUB_DATABASE_POOL_SIZE per worker (default 20)")
    parser.add_argument("--attempts", type=int, default=1, help="measurements at most per concurrency (default 1)")
    parser.add_argument("--max-other", type=float, default=0.3, help="other processes' cores tolerated (0.3)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m bench plan``; exit status 1 if a request failed or a count is off."""
    args = _parse(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    for line in machine.describe():
        print(line)
    print(
        f"POST /v1/children/plan/versions over HTTP/1.1 keep-alive on loopback; hub serve --workers {args.workers}, "
        f"HUB_DATABASE_POOL_SIZE={args.pool_size}, in-process delivery worker off; embedded PostgreSQL; a team of "
        f"seven per child (6 decisions, 6 shares, 6 outbox entries per version: {len(CONSENTED)} plan-version, "
        f"{6 - len(CONSENTED)} plan-notice); one child per client; closed loop, {args.warmup:g} s warm-up + "
        f"{args.seconds:g} s measured"
    )
    env = {"HUB_DATABASE_POOL_SIZE": str(args.pool_size), "HUB_SERVE_RUNS_WORKER": "false"}
    ok = True
    with HubUnderTest(workers=args.workers, extra_env=env) as hub:
        set_endpoints(hub, {org: ("mailbox", {}) for org in (SCHOOL, SOCIAL, *OTHERS)})
        pins = [personal_identity_number(11, serial=100 + i) for i in range(max(concurrencies))]
        for pin in pins:
            build_team(hub, pin)
        for c in concurrencies:
            result, meter = measure_quiet(
                hub, lambda: plan_requests(hub, pins), c, args, count_sql="select count(*) from plan_version"
            )
            report(result, meter, args.seconds)
            ok &= not result.errors
        counts = asyncio.run(_counts(hub.url))
        print(
            f"written: {counts['versions']:,} versions, {counts['decisions']:,} decisions, {counts['shares']:,} "
            f"shares ({counts['notices']:,} notices), {counts['outbox']:,} outbox entries"
        )
        if not counts["decisions"] == counts["shares"] == counts["outbox"] == 6 * counts["versions"]:
            print("  MISMATCH: every version should have six decisions, six shares and six outbox entries")
            ok = False
        print(hub.verify_audit())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
