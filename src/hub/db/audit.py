"""Writing the audit trail, searching it, and the old per-organisation chains' check.

Appending an entry is a plain insert (no lock, nothing another request waits for): the entry, and its id
queued in ``audit_pending`` for the sealer (``hub.db.audit_tree``), which fixes the entries' order in the
hub's one audit log and hashes them into its Merkle tree within about a second. Entries appended before
migration 0016 also carry a position in their organisation's hash chain (``seq``, ``hash``,
``audit_chain_head``), which :func:`verify_chains` still checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from hub.domain.audit import AuditAction, AuditOutcome, AuditRecord, BrokenLink, ChainLink, verify_chain

# The entry's insert and its queueing as CTEs, then the statement that returns the entry id: also composed
# into larger statements (hub.db.lawful) as ``with <theirs>, APPEND_CTES APPEND_INSERT``.
APPEND_CTES = """
    audit_entry as (
        insert into audit_event (partition, canonical, occurred_at, action, outcome,
                                 actor_organisation, counterpart_organisation, child_pseudonym,
                                 legal_basis, decision_id, request_id)
        values (:partition, :canonical, :occurred_at, :action, :outcome,
                :actor_organisation, :counterpart_organisation, :child_pseudonym,
                :legal_basis, :decision_id, :request_id)
        returning id
    ), audit_queued as (
        insert into audit_pending (entry_id) select id from audit_entry
    )
"""
APPEND_INSERT = """
    select id from audit_entry
"""
_APPEND = text("with " + APPEND_CTES + APPEND_INSERT)


def append_params(record: AuditRecord) -> dict[str, object]:
    """The bind parameters of ``APPEND_CTES`` + ``APPEND_INSERT`` for ``record``."""
    return {
        "partition": record.partition,
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
    """Append ``record`` in the caller's transaction (queued for the sealer); returns the entry id."""
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
class ChainReport:
    partitions: int
    entries: int
    broken: BrokenLink | None


async def _links(conn: AsyncConnection, partition: str) -> AsyncIterator[ChainLink]:
    result = await conn.stream(
        text("select seq, canonical, hash from audit_event where partition = :p and seq is not null order by seq"),
        {"p": partition},
    )
    async for seq, canonical, hashed in result:
        yield ChainLink(partition, int(seq), str(canonical), bytes(hashed))


async def verify_chains(conn: AsyncConnection) -> ChainReport:
    """Walk the chains of the entries appended before migration 0016; report the first broken link (order,
    hash, or entries missing before the chain's head)."""
    heads = (await conn.execute(text("select partition, seq, hash from audit_chain_head order by partition"))).all()
    entries = 0
    for partition, head_seq, head_hash in heads:
        links = [link async for link in _links(conn, partition)]
        broken = verify_chain(partition, links)
        if broken is None and (not links or links[-1].seq != head_seq or links[-1].hash != bytes(head_hash)):
            last = links[-1].seq if links else 0
            broken = BrokenLink(
                partition, last + 1, f"the chain head says {head_seq} entries; entries after {last} are missing"
            )
        entries += len(links)
        if broken is not None:
            return ChainReport(len(heads), entries, broken)
    return ChainReport(len(heads), entries, None)


# Indexed columns must agree with the hashed content: editing a column alone is tampering too. Compared in
# PostgreSQL, each entry's content parsed once (the lateral subquery), so 10 million entries need no round
# trip each.
def _differs(column: str) -> str:
    cast = "::timestamptz" if column == "occurred_at" else ""
    return f"(j ->> '{column}'){cast} is distinct from {column}"


_FIRST_MISMATCH = text(
    f"select id, {', '.join(_differs(c) for c in _MIRRORED)} from audit_event"
    " cross join lateral (select canonical::jsonb as j offset 0) as parsed"
    f" where {' or '.join(_differs(c) for c in _MIRRORED)} order by id limit 1"
)


async def first_column_mismatch(conn: AsyncConnection) -> tuple[int, str] | None:
    """The first entry (by id) with an indexed column that differs from its hashed content, and which."""
    row = (await conn.execute(_FIRST_MISMATCH)).first()
    if row is None:
        return None
    return int(row[0]), next(c for c, differs in zip(_MIRRORED, row[1:], strict=True) if differs)


@dataclass(frozen=True)
class AuditFilter:
    organisation: str | None = None  # entries where it acted or was the counterpart
    # The organisation's own view: of another organisation's sharing decisions it sees only those that
    # disclosed something to it. A dry run ("may we send this?") or a refusal is the asker's deliberation,
    # and showing it to the would-be recipient would tell it who asked about which child.
    disclosures_only_as_counterpart: bool = False
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
    seq: int | None  # the entry's position in the log; None until the sealer has sealed it
    leaf_hash: bytes | None
    canonical: str


async def search(session: AsyncSession, flt: AuditFilter, *, limit: int) -> list[StoredEntry]:
    """Newest first; ``before_id`` continues a page."""
    where: list[str] = []
    params: dict[str, object] = {"limit": limit}
    if flt.organisation is not None and flt.disclosures_only_as_counterpart:
        where.append(
            "(actor_organisation = :org or (counterpart_organisation = :org and not (action = :deliberation"
            " and (outcome <> :disclosed or (canonical::jsonb #>> '{details,dry_run}') = 'true'))))"
        )
        params.update(org=flt.organisation, deliberation=AuditAction.SHARING_DECISION, disclosed=AuditOutcome.SUCCESS)
    elif flt.organisation is not None:
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
    sql = "select id, partition, canonical from audit_event"
    if where:
        sql += " where " + " and ".join(where)
    sql = (
        f"select e.id, e.partition, l.seq, l.leaf_hash, e.canonical from ({sql} order by id desc limit :limit) as e"
        " left join audit_leaf l on l.entry_id = e.id order by e.id desc"
    )
    rows = await session.execute(text(sql), params)
    return [
        StoredEntry(int(r[0]), r[1], None if r[2] is None else int(r[2]), None if r[3] is None else bytes(r[3]), r[4])
        for r in rows
    ]
