"""Benchmark: ``POST /v1/referrals`` with federated tokens against the hub's own, in alternating pairs.

One hub (``bench.server.HubUnderTest``, as ``python -m bench referrals`` runs it) trusts an OIDC issuer
served on loopback from this process (discovery + JWKS, ``Cache-Control: max-age=300``) through
``HUB_TRUSTED_ISSUERS_FILE``: a ``system`` issuer whose tokens name the sending unit by its HSA-id (looked
up in the registry) and carry the role ``system`` by configuration. The same load as ``bench.referrals``
(every request a new referral with its own ``Idempotency-Key``) runs with the hub's own dev tokens and
with the issuer's tokens, alternating, ``--pairs`` times; each client keeps its token, as a system does
until it expires. Target (issue #13): federated within 5 % of the hub's own tokens.

    python -m bench federated [--seconds 5] [--warmup 2] [--concurrency 32] [--pairs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import mean
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

from bench import load, machine
from bench.referrals import (
    RECEIVER,
    SENDERS,
    asyncpg_dsn,
    check_send,
    children,
    measure_quiet,
    record_consents,
    referral_requests,
    report,
    set_endpoints,
)
from bench.server import HubUnderTest

TARGET_SHARE = 0.95  # federated throughput at least 95 % of the hub's own tokens'
AUDIENCE = "https://hub.bench"
UNIT_HSA = "SE2321000164-B001"  # the sending elevhälsa's HSA-id for this benchmark


class Issuer:
    """An OIDC issuer on loopback: discovery and a JWKS of one RSA key, and tokens signed with it."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.url = ""
        self.fetches = 0

    @contextmanager
    def serving(self) -> Iterator[str]:
        issuer = self
        public = {**jwk.construct(self.pem, "RS256").public_key().to_dict(), "kid": "bench-1", "use": "sig"}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    issuer.fetches += 1
                    body = {"keys": [public]}
                else:
                    self.send_error(404)
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=300")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self.url
        finally:
            server.shutdown()
            server.server_close()

    def issuers_file(self, path: Path) -> Path:
        config = {
            "name": "bench-idp",
            "issuer": self.url,
            "discovery_url": f"{self.url}/.well-known/openid-configuration",
            "audience": AUDIENCE,
            "kind": "system",
            "subject_claim": "client_id",
            "organisation_claim": "unit_hsa_id",
            "roles": ["system"],
        }
        path.write_text(json.dumps({"issuers": [config]}))
        return path

    def token(self, client_id: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": client_id,
            "client_id": client_id,
            "unit_hsa_id": UNIT_HSA,
            "iat": now,
            "exp": now + 3600,
            "jti": uuid.uuid4().hex,
        }
        return str(jwt.encode(claims, self.pem, algorithm="RS256", headers={"kid": "bench-1"}))


async def _set_hsa_id(owner_url: str, organisation_id: str, hsa_id: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(owner_url))
    try:
        await conn.execute("update organisation set hsa_id = $1 where id = $2", hsa_id, organisation_id)
    finally:
        await conn.close()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench federated", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each (default 2)")
    parser.add_argument("--concurrency", default="32", help="comma-separated client counts (default 32)")
    parser.add_argument("--pairs", type=int, default=3, help="alternating own/federated pairs (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="hub serve --workers (default 2)")
    parser.add_argument("--children", type=int, default=100, help="benchmark children (default 100)")
    parser.add_argument("--pool-size", type=int, default=20, help="HUB_DATABASE_POOL_SIZE per worker (default 20)")
    parser.add_argument("--max-other", type=float, default=0.15, help="as bench.referrals (default 0.15)")
    parser.add_argument("--attempts", type=int, default=4, help="as bench.referrals (default 4)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m bench federated``; exit status 1 if the target is missed."""
    args = _parse(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    for line in machine.describe():
        print(line)
    print(
        f"POST /v1/referrals, hub serve --workers {args.workers}, one sender, {args.children} children; "
        f"the hub's own dev tokens and a loopback OIDC issuer's (JWKS cached), alternating, {args.pairs} pair(s) "
        f"of {args.warmup:g} s warm-up + {args.seconds:g} s"
    )
    issuer = Issuer()
    ok = True
    with issuer.serving():
        env = {
            "HUB_DATABASE_POOL_SIZE": str(args.pool_size),
            "HUB_SERVE_RUNS_WORKER": "false",
        }
        path = Path(issuer.issuers_file(Path(f"/tmp/hub-bench-issuers-{uuid.uuid4().hex}.json")))
        env["HUB_TRUSTED_ISSUERS_FILE"] = str(path)
        try:
            with HubUnderTest(workers=args.workers, extra_env=env) as hub:
                sender = SENDERS[0]
                asyncio.run(_set_hsa_id(hub.owner_url, sender, UNIT_HSA))
                set_endpoints(hub, {RECEIVER: ("mailbox", {})})
                pins = children(args.children)
                record_consents(hub, pins)
                tokens = {"own": [hub.token(sender, "system")], "federated": [issuer.token("journal-system")]}
                for kind, kind_tokens in tokens.items():
                    check_send(hub, kind_tokens[0], pins[0])
                    print(f"check ({kind}): 202, replay answered the same referral")
                for c in concurrencies:
                    ok &= _pairs(hub, tokens, pins, c, args)
                print(f"the issuer's JWKS was fetched {issuer.fetches} time(s) ({args.workers} worker process(es))")
        finally:
            path.unlink(missing_ok=True)
    return 0 if ok else 1


def _pairs(
    hub: HubUnderTest, tokens: dict[str, list[str]], pins: list[str], clients: int, args: argparse.Namespace
) -> bool:
    results: dict[str, list[load.LoadResult]] = {"own": [], "federated": []}
    cpu: dict[str, list[float]] = {"own": [], "federated": []}  # the hub's CPU ms per referral
    host = f"{hub.host}:{hub.port}"
    for pair in range(args.pairs):
        order = ["own", "federated"] if pair % 2 == 0 else ["federated", "own"]
        for kind in order:

            def requests(kind: str = kind) -> load.RequestFactory:
                return referral_requests(host, tokens[kind], pins, tag=kind[0])

            result, meter = measure_quiet(hub, requests, clients, args)
            print(f"{kind:>9}, pair {pair + 1}: ", end="")
            report(result, meter, args.seconds)
            results[kind].append(result)
            (h0, _, _), (h1, _, _) = meter.readings["start"], meter.readings["end"]
            cpu[kind].append(1000 * (h1 - h0) / max(1, result.completed))
    own = mean(r.throughput for r in results["own"])
    federated = mean(r.throughput for r in results["federated"])
    share = federated / own if own else 0.0
    met = share >= TARGET_SHARE and not any(r.errors for rs in results.values() for r in rs)
    print(
        f"{clients} clients: own {', '.join(f'{r.throughput:,.0f}' for r in results['own'])} (mean {own:,.0f}); "
        f"federated {', '.join(f'{r.throughput:,.0f}' for r in results['federated'])} (mean {federated:,.0f}) "
        f"referrals/s = {share:.1%}; target ≥ {TARGET_SHARE:.0%}: {'met' if met else 'NOT met'}"
    )
    # Throughput swings with what else runs on a shared machine; the hub's own CPU time per referral much less.
    own_cpu, federated_cpu = mean(cpu["own"]), mean(cpu["federated"])
    print(
        f"  hub CPU ms per referral: own {', '.join(f'{c:.2f}' for c in cpu['own'])} (mean {own_cpu:.2f}); "
        f"federated {', '.join(f'{c:.2f}' for c in cpu['federated'])} (mean {federated_cpu:.2f}) = "
        f"{federated_cpu / own_cpu:.1%} of own"
    )
    return met
