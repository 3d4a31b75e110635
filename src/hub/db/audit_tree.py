"""The audit log's Merkle tree in PostgreSQL: sealing queued entries, tree heads, proofs, the log's walk.

Tables (migration 0016): ``audit_pending`` (entry ids appended and not yet sealed), ``audit_leaf`` (an
entry's position ``seq`` in the log and its leaf hash), ``audit_node`` (each complete perfect subtree above
the leaves, ``hub.domain.merkle``), ``audit_checkpoint`` (signed tree heads). All but ``audit_pending``
are insert-only for the hub's role. Sealing is one transaction: a sealer that dies mid-batch leaves the
queue as it was, and a second sealer (which the advisory lock should keep away) could only fail on the
leaves' unique keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.engine import Statement
from hub.domain.checkpoint import Checkpoint, TreeHead
from hub.domain.merkle import EMPTY_ROOT, Frontier, Node, completed_by, fold, leaf_hash, perfect_parts

SEALER_LOCK = 7274211
"""The transaction-level advisory lock a sealing transaction holds: one sealer at a time in all processes."""

# The queue's lowest ``limit`` ids, dequeued, with their entries (in id order) that no leaf holds yet. Written
# so that only linear plans exist: the batch is a range (``<=`` its highest id) rather than ``in (select ...
# limit)``, which PostgreSQL may plan, when the plan is made on an empty queue (as the sealer mostly leaves
# it), as a nested-loop semi join re-reading the sorted batch for every queued row (quadratic: 23 ms for 300
# entries); and the entries are fetched by their ids (``= any``) rather than by a join, which it may plan,
# when its statistics say the queue is long, as a merge join walking all of audit_event from its first id.
_CLAIM = Statement(
    """
    with claimed as (
        delete from audit_pending
        where entry_id <= (select max(entry_id)
                           from (select entry_id from audit_pending order by entry_id limit :limit) as batch)
        returning entry_id
    )
    select e.id, e.canonical from audit_event e
    where e.id = any(array(select entry_id from claimed))
      and not exists (select 1 from audit_leaf l where l.entry_id = e.id)
    order by e.id
    """
)
_INSERT_LEAVES = Statement(
    """
    insert into audit_leaf (seq, entry_id, leaf_hash)
    select * from unnest(cast(:seqs as bigint[]), cast(:ids as bigint[]), cast(:hashes as bytea[]))
    """
)
_INSERT_NODES = Statement(
    """
    insert into audit_node (level, index, hash)
    select * from unnest(cast(:levels as smallint[]), cast(:indexes as bigint[]), cast(:hashes as bytea[]))
    """
)
_NODES = text(
    """
    select 0, seq, leaf_hash from audit_leaf where seq = any(cast(:leaves as bigint[]))
    union all
    select n.level, n.index, n.hash
    from audit_node n
    join unnest(cast(:levels as smallint[]), cast(:indexes as bigint[])) as w(level, index)
      on n.level = w.level and n.index = w.index
    """
)


async def try_lock(conn: AsyncConnection, *, wait: bool = False) -> bool:
    """Take the sealer's lock for the current transaction; False when another sealer holds it (``wait``:
    wait for it instead)."""
    if wait:
        await conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": SEALER_LOCK})
        return True
    return bool(await conn.scalar(text("select pg_try_advisory_xact_lock(:k)"), {"k": SEALER_LOCK}))


async def sealed_size(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("select coalesce(max(seq) + 1, 0) from audit_leaf")) or 0)


async def nodes(conn: AsyncConnection, wanted: Iterable[Node]) -> dict[Node, bytes]:
    """The stored hashes of these perfect nodes (level 0: leaves). A node missing from the result is not
    stored: the tree is not that big, or its tables were tampered with."""
    wanted = set(wanted)
    leaves = [index for level, index in wanted if level == 0]
    upper = [(level, index) for level, index in wanted if level > 0]
    rows = await conn.execute(
        _NODES,
        {"leaves": leaves, "levels": [n[0] for n in upper], "indexes": [n[1] for n in upper]},
    )
    return {(int(level), int(index)): bytes(h) for level, index, h in rows}


async def frontier(conn: AsyncConnection, size: int) -> Frontier:
    """The right edge of the stored tree of ``size`` leaves."""
    parts = perfect_parts(0, size)
    found = await nodes(conn, parts)
    missing = [p for p in parts if p not in found]
    if missing:
        raise LookupError(f"the audit tree lacks node {missing[0]} of a tree of {size}")
    return Frontier(size=size, hashes=[found[p] for p in parts])


async def range_hashes(conn: AsyncConnection, ranges: list[tuple[int, int]]) -> list[bytes]:
    """``MTH(D[lo:hi])`` of each range (as ``hub.domain.merkle`` proofs list them), in one query."""
    parts = {r: perfect_parts(*r) for r in ranges}
    found = await nodes(conn, [p for ps in parts.values() for p in ps])
    try:
        return [fold([found[p] for p in parts[r]]) for r in ranges]
    except KeyError as exc:
        raise LookupError(f"the audit tree lacks node {exc.args[0]}") from None


@dataclass(frozen=True)
class Sealed:
    entries: int  # sealed in this batch
    size: int  # the log's size after it


SEAL_CHUNK = 250
"""Entries claimed, hashed and inserted per statement of a batch. The sealer shares the event loop with the
requests (``hub serve``): between statements it waits on the database and the requests run, so the chunk
bounds how long it holds the loop at a time. A batch of 1,000 entries in one statement held it for 3.5-5 ms
of CPU at once, longer than a request's whole CPU; in chunks of 250, 1-1.5 ms, for about the same CPU in
all (10 ms per 1,000 entries)."""


async def seal_batch(conn: AsyncConnection, *, limit: int, chunk: int = SEAL_CHUNK) -> Sealed:
    """Seal up to ``limit`` queued entries (by id) at the end of the log, in the caller's transaction,
    which must hold the sealer's lock (:func:`try_lock`); ``chunk`` entries a statement at most (the log,
    its tree and the queue end the same whatever the chunk)."""
    size = await sealed_size(conn)  # through SQLAlchemy first: the transaction has begun on the connection
    # The chunks' statements run on the driver connection, in that transaction: SQLAlchemy's own work per
    # statement and per row was most of the sealer's CPU.
    driver = (await conn.get_raw_connection()).driver_connection
    tree: Frontier | None = None
    sealed = 0
    while sealed < limit:
        wanted = min(chunk, limit - sealed)
        rows = await _CLAIM.fetch(driver, {"limit": wanted})
        if not rows:
            break
        if tree is None:
            tree = await frontier(conn, size)
        await _append(driver, tree, rows)
        sealed += len(rows)
        if len(rows) < wanted:
            break  # the queue is empty (or held entries sealed already): the next round looks again
    return Sealed(sealed, size if tree is None else tree.size)


async def _append(driver: Any, tree: Frontier, rows: Sequence[Any]) -> None:
    """Hash ``rows`` (entry id, canonical) onto ``tree`` and store their leaves and the nodes they complete."""
    seqs, ids, hashes = [], [], []
    levels, indexes, node_hashes = [], [], []
    for entry_id, canonical in rows:
        leaf = leaf_hash(int(entry_id), str(canonical))
        seqs.append(tree.size)
        ids.append(int(entry_id))
        hashes.append(leaf)
        for (level, index), h in tree.append(leaf):
            levels.append(level)
            indexes.append(index)
            node_hashes.append(h)
    await _INSERT_LEAVES.execute(driver, {"seqs": seqs, "ids": ids, "hashes": hashes})
    if levels:
        await _INSERT_NODES.execute(driver, {"levels": levels, "indexes": indexes, "hashes": node_hashes})


async def tree_root(conn: AsyncConnection, size: int) -> bytes:
    return EMPTY_ROOT if size == 0 else (await frontier(conn, size)).root()


async def latest_checkpoint_at(conn: AsyncConnection) -> tuple[int, datetime] | None:
    row = (await conn.execute(text("select size, signed_at from audit_checkpoint order by id desc limit 1"))).first()
    return None if row is None else (int(row[0]), row[1])


async def add_checkpoint(conn: AsyncConnection, checkpoint: Checkpoint) -> None:
    head = checkpoint.head
    await conn.execute(
        text(
            "insert into audit_checkpoint (size, root_hash, signed_at, body, public_key, signature) "
            "values (:size, :root, :at, :body, :key, :sig)"
        ),
        {
            "size": head.size,
            "root": head.root,
            "at": head.signed_at,
            "body": head.body(),
            "key": checkpoint.public_key,
            "sig": checkpoint.signature,
        },
    )


def _checkpoint(body: str, key: bytes, sig: bytes) -> Checkpoint:
    return Checkpoint(head=TreeHead.parse(body), public_key=bytes(key), signature=bytes(sig))


async def checkpoints(conn: AsyncConnection, *, limit: int, size: int | None = None) -> list[Checkpoint]:
    """The newest checkpoints first; ``size``: only those of that tree size."""
    where = "" if size is None else "where size = :size"
    rows = await conn.execute(
        text(f"select body, public_key, signature from audit_checkpoint {where} order by id desc limit :limit"),
        {"limit": limit, "size": size},
    )
    return [_checkpoint(body, key, sig) for body, key, sig in rows]


async def leaf_of(conn: AsyncConnection, entry_id: int) -> tuple[int, bytes] | None:
    sql = text("select seq, leaf_hash from audit_leaf where entry_id = :id")
    row = (await conn.execute(sql, {"id": entry_id})).first()
    return None if row is None else (int(row[0]), bytes(row[1]))


@dataclass(frozen=True)
class LogLeaf:
    """A sealed position of the log as the verifier reads it: the stored leaf and the entry it names."""

    seq: int
    entry_id: int
    stored_hash: bytes
    canonical: str | None  # None: the entry is gone


async def walk(conn: AsyncConnection, *, chunk: int = 50_000) -> AsyncIterator[LogLeaf]:
    """Every sealed position in ``seq`` order, with its entry's content, read a chunk of positions at a
    time on the driver connection (10 million entries: one query per chunk, no per-row overhead)."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    after = -1
    while True:
        rows = await driver.fetch(
            "select l.seq, l.entry_id, l.leaf_hash, e.canonical from audit_leaf l"
            " left join audit_event e on e.id = l.entry_id where l.seq > $1 order by l.seq limit $2",
            after,
            chunk,
        )
        for seq, entry_id, stored, canonical in rows:
            yield LogLeaf(seq, entry_id, stored, canonical)
        if len(rows) < chunk:
            return
        after = rows[-1][0]


_COMPLETED_DIGEST = """
    select sha256(coalesce(string_agg(n.hash, ''::bytea order by n.level, n.index), '')) from audit_node n
    join unnest($1::smallint[], $2::bigint[], $3::bigint[]) as w(level, first, last)
      on n.level = w.level and n.index between w.first and w.last
"""


async def completed_digest(conn: AsyncConnection, lo: int, hi: int) -> bytes:
    """SHA-256 of the stored hashes of the nodes leaves ``lo`` to ``hi - 1`` complete
    (``hub.domain.merkle.completed_by``), concatenated in (level, index) order: a stretch of the tree
    compared in one row, read by the primary key a range of indexes per level."""
    ranges = completed_by(lo, hi)
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    digest = await driver.fetchval(
        _COMPLETED_DIGEST, [r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges]
    )
    return bytes(digest)


async def unsealed(conn: AsyncConnection) -> tuple[int, int]:
    """How many entries are not sealed, and how many of those are not queued for the sealer either."""
    row = (
        await conn.execute(
            text(
                "select count(*), count(*) filter (where p.entry_id is null) from audit_event e"
                " left join audit_pending p on p.entry_id = e.id"
                " where not exists (select 1 from audit_leaf l where l.entry_id = e.id)"
            )
        )
    ).one()
    return int(row[0]), int(row[1])
