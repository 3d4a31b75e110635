"""The audit log as a Merkle tree, exactly as RFC 9162 (Certificate Transparency 2.0, §2.1) defines it.

The hub's audit log is the list of sealed entries in their sealing order (``seq`` 0, 1, 2, …). Its state
at size ``n`` is the Merkle Tree Hash of the first ``n`` leaves:

- a leaf's hash is ``SHA-256(0x00 || leaf data)``; an entry's leaf data is its id as 8 bytes big-endian
  followed by its canonical JSON in UTF-8 (:func:`leaf_hash`);
- ``MTH({}) = SHA-256()``, ``MTH({d0}) = leaf hash``, and for ``n > 1`` with ``k`` the largest power of two
  smaller than ``n``: ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``.

Every subtree that recursion reaches and whose size is a power of two starts at a multiple of its size: a
*perfect node* ``(level, index)`` covers leaves ``[index·2^level, (index+1)·2^level)``. The hub stores each
perfect node once it is complete (the sealer makes them as leaves arrive), so any tree head, inclusion
proof or consistency proof needs only O(log² n) stored hashes (:func:`perfect_parts`). A checkpoint is a
signed tree head (``hub.domain.checkpoint``); nothing here knows about storage or keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Node = tuple[int, int]
"""A perfect node: ``(level, index)``; level 0 is a leaf."""

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry_id: int, canonical: str) -> bytes:
    """``SHA-256(0x00 || entry id as uint64 big-endian || canonical JSON in UTF-8)``."""
    return hashlib.sha256(b"\x00" + entry_id.to_bytes(8, "big") + canonical.encode()).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``): where RFC 9162 splits a tree of ``n``."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_parts(lo: int, hi: int) -> list[Node]:
    """The perfect nodes, left to right, whose right fold is ``MTH(D[lo:hi])`` — for a range the RFC
    recursion reaches (``lo`` a multiple of a power of two at least ``hi - lo``): the binary digits of
    ``hi - lo``, largest first."""
    parts: list[Node] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        parts.append((level, lo >> level))
        lo += 1 << level
    return parts


def completed_by(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """The perfect nodes above the leaves that appending leaves ``lo`` to ``hi - 1`` completes, as
    ``(level, first index, last index)`` per level, lowest level first: node ``(level, index)`` is completed
    by its last leaf, ``(index + 1)·2^level - 1``. At each level they complete in index order."""
    ranges = []
    for level in range(1, hi.bit_length()):
        first, last = -(-(lo + 1) >> level) - 1, (hi >> level) - 1  # ceil((lo+1)/2^L) - 1, floor(hi/2^L) - 1
        if first <= last:
            ranges.append((level, first, last))
    return ranges


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from its perfect parts' hashes (largest first): ``H(1||p0||H(1||p1||…))``."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for part in reversed(hashes[:-1]):
        result = node_hash(part, result)
    return result


Lookup = Callable[[Node], bytes]


def range_hash(lo: int, hi: int, lookup: Lookup) -> bytes:
    return fold([lookup(node) for node in perfect_parts(lo, hi)])


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes are the audit path of leaf ``index`` in a tree of ``size`` (RFC 9162
    §2.1.3.1 ``PATH``), leaf end first."""
    if not 0 <= index < size:
        raise ValueError("the leaf is not in the tree")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return ranges[::-1]


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The ranges whose hashes prove the tree of ``first`` a prefix of the tree of ``second`` (RFC 9162
    §2.1.4.1 ``PROOF``/``SUBPROOF``), in proof order."""
    if not 0 < first <= second:
        raise ValueError("a consistency proof needs 0 < first <= second")
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, second, first, True
    while m != hi - lo:
        k = split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    return ranges[::-1]


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` in the tree ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree (``first``, ``first_root``) is a prefix of the tree
    (``second``, ``second_root``)?"""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


@dataclass
class Frontier:
    """The right edge of a tree: the perfect nodes of ``perfect_parts(0, size)`` with their hashes. Appending
    leaves completes perfect nodes (which the sealer stores); ``root()`` is the tree head. O(log n) memory,
    so verifying 10 million entries streams them."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)  # largest subtree first

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf; the perfect nodes above level 0 it completes, lowest first."""
        completed: list[tuple[Node, bytes]] = []
        self.hashes.append(leaf)
        index, level, h = self.size, 0, leaf
        while index & 1:
            self.hashes.pop()
            h = node_hash(self.hashes.pop(), h)
            index, level = index >> 1, level + 1
            self.hashes.append(h)
            completed.append(((level, index), h))
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold(self.hashes)
