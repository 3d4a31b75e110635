"""Writing and verifying the audit trail.

One statement appends an entry: it advances the partition's chain head (row-locked until the
transaction commits, so only writers *in the same organisation* wait for each other) and inserts the
entry with the new hash, computed by PostgreSQL's ``sha256`` exactly as ``hub.domain.audit.next_hash``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from hub.domain.audit import AuditRecord, BrokenLink, ChainLink, genesis_hash, verify_chain

# The chain head's CTE and the entry's insert, also composed into larger statements (hub.db.lawful).
APPEND_CTES = """
    head as (
        insert into audit_chain_head as h (partition, seq, hash)
        values (:partition, 1, sha256(:genesis || convert_to(:canonical, 'UTF8')))
        on conflict (partition) do update
            set seq = h.seq + 1, hash = sha256(h.hash || convert_to(:canonical, 'UTF8'))
        returning seq, hash
    )
"""
APPEND_INSERT = """
    insert into audit_event (partition, seq, hash, canonical, occurred_at, action, outcome,
                             actor_organisation, counterpart_organisation, child_pseudonym,
                             legal_basis, decision_id, request_id)
    select :partition, head.seq, head.hash, :canonical, :occurred_at, :action, :outcome,
           :actor_organisation, :counterpart_organisation, :child_pseudonym,
           :legal_basis, :decision_id, :request_id
    from head
    returning id
"""
_APPEND = text("with " + APPEND_CTES + APPEND_INSERT)


def append_params(record: AuditRecord) -> dict[str, object]:
    """The bind parameters of ``APPEND_CTES`` + ``APPEND_INSERT`` for ``record``."""
    return {
        "partition": record.partition,
        "genesis": genesis_hash(record.partition),
        "canonical": record.canonical(),
        "occurred_at": record.occurred_at,
        "action": record.action.value,
        "outcome": record.outcome.value,
        "actor_organisation": record.actor_organisation,
        "counterpart_organisation": record.counterpart_organisation,
        "child_pseudonym": record.child_pseudonym,
        "legal_basis": record.legal_basis,
        "decision_id": record.decision_id,
        "request_id": record.request_id,
    }


async def append(session: AsyncSession, record: AuditRecord) -> int:
    """Append ``record`` to its partition's chain in the caller's transaction; returns the entry id."""
    result = await session.execute(_APPEND, append_params(record))
    return int(result.scalar_one())


# Indexed columns must agree with the hashed content: editing a column alone is tampering too.
_MIRRORED = (
    "occurred_at",
    "action",
    "outcome",
    "actor_organisation",
    "counterpart_organisation",
    "child_pseudonym",
    "legal_basis",
    "decision_id",
    "request_id",
)


@dataclass(frozen=True)
class VerifyReport:
    partitions: int
    entries: int
    broken: BrokenLink | None


async def _links(conn: AsyncConnection, partition: str) -> AsyncIterator[tuple[ChainLink, dict[str, object]]]:
    result = await conn.stream(
        text(
            "select seq, canonical, hash, "
            + ", ".join(_MIRRORED)
            + " from audit_event where partition = :p order by seq"
        ),
        {"p": partition},
    )
    async for row in result.mappings():
        link = ChainLink(partition, int(row["seq"]), str(row["canonical"]), bytes(row["hash"]))
        yield link, {k: row[k] for k in _MIRRORED}


async def verify(conn: AsyncConnection) -> VerifyReport:
    """Walk every partition's chain; report the first broken link (chain order, hash, columns, head)."""
    import json
    from datetime import datetime

    heads = (await conn.execute(text("select partition, seq, hash from audit_chain_head order by partition"))).all()
    entries = 0
    for partition, head_seq, head_hash in heads:
        links: list[ChainLink] = []
        async for link, columns in _links(conn, partition):
            body = json.loads(link.canonical)
            for key, value in columns.items():
                stored = value.isoformat() if isinstance(value, datetime) else value
                hashed = body.get(key)
                if key == "occurred_at" and hashed is not None and stored is not None:
                    same = datetime.fromisoformat(str(hashed)) == datetime.fromisoformat(str(stored))
                else:
                    same = hashed == stored
                if not same:
                    return VerifyReport(
                        len(heads),
                        entries,
                        BrokenLink(partition, link.seq, f"column {key} differs from the hashed content"),
                    )
            links.append(link)
        broken = verify_chain(partition, links)
        if broken is None and (not links or links[-1].seq != head_seq or links[-1].hash != bytes(head_hash)):
            last = links[-1].seq if links else 0
            broken = BrokenLink(
                partition, last + 1, f"the chain head says {head_seq} entries; entries after {last} are missing"
            )
        entries += len(links)
        if broken is not None:
            return VerifyReport(len(heads), entries, broken)
    return VerifyReport(len(heads), entries, None)


@dataclass(frozen=True)
class AuditFilter:
    organisation: str | None = None  # entries where it acted or was the counterpart
    action: str | None = None
    outcome: str | None = None
    since: object | None = None
    until: object | None = None
    child_pseudonyms: tuple[str, ...] = ()
    before_id: int | None = None


@dataclass(frozen=True)
class StoredEntry:
    id: int
    partition: str
    seq: int
    hash: bytes
    canonical: str


async def search(session: AsyncSession, flt: AuditFilter, *, limit: int) -> list[StoredEntry]:
    """Newest first; ``before_id`` continues a page."""
    where: list[str] = []
    params: dict[str, object] = {"limit": limit}
    if flt.organisation is not None:
        where.append("(actor_organisation = :org or counterpart_organisation = :org)")
        params["org"] = flt.organisation
    for column, value in (("action", flt.action), ("outcome", flt.outcome)):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if flt.since is not None:
        where.append("occurred_at >= :since")
        params["since"] = flt.since
    if flt.until is not None:
        where.append("occurred_at < :until")
        params["until"] = flt.until
    if flt.child_pseudonyms:
        where.append("child_pseudonym = any(:children)")
        params["children"] = list(flt.child_pseudonyms)
    if flt.before_id is not None:
        where.append("id < :before")
        params["before"] = flt.before_id
    sql = "select id, partition, seq, hash, canonical from audit_event"
    if where:
        sql += " where " + " and ".join(where)
    sql += " order by id desc limit :limit"
    rows = await session.execute(text(sql), params)
    return [StoredEntry(int(r[0]), r[1], int(r[2]), bytes(r[3]), r[4]) for r in rows]
