"""Verifying the audit log from the database's entries (``hub audit verify``): needs only a database
connection, never the running hub or its keys.

The check recomputes every leaf hash from the entries' content and the Merkle tree from the leaves, in the
log's order, and compares the result with a checkpoint kept outside the database (``--checkpoint``) and
with the newest checkpoint the database holds. Against a checkpoint of size ``n`` it detects entries
removed from the end (fewer than ``n`` sealed), and any entry among the first ``n`` rewritten, reordered,
removed or inserted, even with every stored hash recomputed: the recomputed root differs from the signed
one. Besides: positions missing in the log, content that no longer matches its sealed leaf hash, indexed
columns that differ from the hashed content, entries neither sealed nor queued, and the pre-0016
organisation chains.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from itertools import chain

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.db import audit as audit_db
from hub.db import audit_tree
from hub.domain.checkpoint import Checkpoint
from hub.domain.merkle import Frontier, completed_by, leaf_hash
from hub.keys import signature_valid


@dataclass
class LogReport:
    sealed: int = 0
    unsealed: int = 0
    chain_entries: int = 0
    checked: list[str] = field(default_factory=list)  # what the log was compared with
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def _describe(cp: Checkpoint) -> str:
    return f"checkpoint of {cp.head.size} entries signed at {cp.head.signed_at.isoformat()} by key {cp.key_id}"


NODES_PER_CHECK = 50_000
"""Leaves walked between two comparisons of the stored nodes they complete (one query each)."""


async def _walk(conn: AsyncConnection, report: LogReport, sizes: set[int]) -> dict[int, bytes]:
    """Recompute the tree in the log's order; the roots at ``sizes`` (those the log reaches). Every stored
    node is compared with the recomputed one as the walk completes it (:func:`_same_nodes`)."""
    tree = Frontier()
    roots: dict[int, bytes] = {0: tree.root()} if 0 in sizes else {}
    completed: list[list[bytes]] = []  # per level above the leaves, in index order: as they complete
    compared = 0  # leaves whose completed nodes were compared
    async for leaf in audit_tree.walk(conn):
        if leaf.seq != tree.size:
            report.problems.append(f"position {tree.size} of the log is missing (the next is {leaf.seq})")
            return roots
        if leaf.canonical is None:
            report.problems.append(f"entry {leaf.entry_id} at position {leaf.seq} is gone")
            return roots
        recomputed = leaf_hash(leaf.entry_id, leaf.canonical)
        if recomputed != leaf.stored_hash:
            report.problems.append(
                f"entry {leaf.entry_id} at position {leaf.seq}: its content does not match its sealed leaf hash"
            )
            return roots
        for (level, _), h in tree.append(recomputed):
            if level > len(completed):
                completed.append([])
            completed[level - 1].append(h)
        if tree.size in sizes:
            roots[tree.size] = tree.root()
        if tree.size - compared == NODES_PER_CHECK:
            if not await _same_nodes(conn, report, compared, tree.size, completed):
                return roots
            compared, completed = tree.size, []
    if not await _same_nodes(conn, report, compared, tree.size, completed):
        return roots
    report.sealed = tree.size
    roots[-1] = tree.root()
    return roots


async def _same_nodes(
    conn: AsyncConnection, report: LogReport, lo: int, hi: int, recomputed: list[list[bytes]]
) -> bool:
    """The stored nodes that leaves ``lo`` to ``hi - 1`` complete are those recomputed from the entries
    (compared by a digest of each stretch; node by node only to name the first that differs). The
    inclusion and consistency proofs the hub serves are made of stored nodes: one rewritten or lost would
    make an intact entry's proof fail against a signed checkpoint while the tree head still matched."""
    if await audit_tree.completed_digest(conn, lo, hi) == hashlib.sha256(b"".join(chain(*recomputed))).digest():
        return True
    expected = {
        (level, index): h
        for (level, first, _), hashes in zip(completed_by(lo, hi), recomputed, strict=True)
        for index, h in enumerate(hashes, start=first)
    }
    stored = await audit_tree.nodes(conn, expected)
    for node, h in expected.items():
        if stored.get(node) != h:
            state = "is missing" if node not in stored else "does not match the entries it covers"
            report.problems.append(f"node {node} (level, index) of the stored Merkle tree {state}")
            return False
    report.problems.append(f"the stored Merkle tree holds nodes over positions {lo} to {hi - 1} that it should not")
    return False


async def verify_log(engine: AsyncEngine, *, external: Checkpoint | None = None) -> LogReport:
    """Check the log against ``external`` (a checkpoint kept outside the database) and the newest stored
    checkpoint; every problem found, in the order checked (a walk stops at its first)."""
    report = LogReport()
    targets: list[Checkpoint] = []
    if external is not None:
        if not signature_valid(external):
            report.problems.append(f"the {_describe(external)} does not carry a valid signature")
            return report
        targets.append(external)
    async with engine.connect() as conn:
        stored = await audit_tree.checkpoints(conn, limit=1)
        for cp in stored:
            if signature_valid(cp):
                targets.append(cp)
            else:
                report.problems.append(f"the database's newest {_describe(cp)} does not carry a valid signature")
        chains = await audit_db.verify_chains(conn)
        report.chain_entries = chains.entries
        if chains.broken is not None:
            b = chains.broken
            report.problems.append(f"chain {b.partition!r}, entry {b.seq}: {b.problem}")
        mismatch = await audit_db.first_column_mismatch(conn)
        if mismatch is not None:
            report.problems.append(f"entry {mismatch[0]}: column {mismatch[1]} differs from the hashed content")
        roots = await _walk(conn, report, {cp.head.size for cp in targets})
        if -1 in roots:
            size = report.sealed
            try:
                same = not size or roots[-1] == await audit_tree.tree_root(conn, size)
            except LookupError:
                same = False
            if not same:
                report.problems.append("the stored Merkle tree does not match the entries it covers")
        report.unsealed, lost = await audit_tree.unsealed(conn)
        if lost:
            report.problems.append(f"{lost} entries are neither sealed nor queued for sealing")
    for cp in targets:
        report.checked.append(_describe(cp))
        if -1 in roots and cp.head.size > report.sealed:
            report.problems.append(
                f"the log holds {report.sealed} sealed entries but the {_describe(cp)} covers {cp.head.size}:"
                " entries were removed"
            )
        elif cp.head.size in roots and roots[cp.head.size] != cp.head.root:
            report.problems.append(
                f"the log's first {cp.head.size} entries do not hash to the root of the {_describe(cp)}:"
                " entries were rewritten, reordered, removed or inserted"
            )
    return report
