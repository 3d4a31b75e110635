"""Cell-key noise: a child's secret record key, a base cell's fixed adjustment, and a count as the
suppression sees it with noise on (see the package docstring)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Final

from hub.domain.disclosure.table import Count

CELL_KEY_MODULUS: Final = 2**32

DRAWS: Final = 100
NOISE_TABLE: Final[tuple[int, ...]] = (-3,) * 2 + (-2,) * 8 + (-1,) * 20 + (0,) * 40 + (1,) * 20 + (2,) * 8 + (3,) * 2
"""A base cell's adjustment when it has 3 children or more: -3 or +3 with probability 2 % each, ±2 8 %,
±1 20 %, 0 40 % (mean 0, variance 1.4)."""

ADJUSTMENTS: Final[Mapping[int, tuple[int, ...]]] = {
    1: (-1,) * 30 + (0,) * 40 + (1,) * 30,
    2: (-2,) * 10 + (-1,) * 20 + (0,) * 40 + (1,) * 20 + (2,) * 10,
    3: NOISE_TABLE,
}
"""A base cell's adjustment by its distinct children (1, 2, 3 or more), for each of :data:`DRAWS` equally
likely draws. Each row is symmetric (no bias, however many cells a count sums) and never takes a cell
below 0, so even the lowest readings fit several true counts: a reading of 0 may be 1, 2 or 3 children.
Public on purpose: the protection rests on the secret record keys, not on hiding the method."""

MAX_NOISE: Final = max(NOISE_TABLE)


def record_key(secret: bytes, child_ref: str) -> int:
    """A child's permanent, secret-keyed record key in ``[0, CELL_KEY_MODULUS)``. Compute it from the
    child's pseudonym with the hub's cell-key secret; never publish it or the secret."""
    digest = hmac.new(secret, child_ref.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % CELL_KEY_MODULUS


def combine_record_keys(record_keys: Iterable[int]) -> int:
    """A cell key: the record keys of the cell's *distinct* children, summed modulo the modulus."""
    return sum(record_keys) % CELL_KEY_MODULUS


def adjustment(children: int, draw: int) -> int:
    """A base cell's adjustment: the row of :data:`ADJUSTMENTS` for its distinct ``children`` at ``draw``
    (in ``0 .. DRAWS - 1``), which the query layer derives from the cell's key alone. The same children
    in a base cell always get the same adjustment; an empty cell gets none."""
    if children <= 0:
        return 0
    return ADJUSTMENTS[min(children, 3)][draw % DRAWS]


def adjusted(count: Count) -> Count:
    """A count as the method sees it with noise on: value and children each plus the base cells'
    adjustments. A non-empty count stays at least 1, as the suppression's equations assume (it is then
    hidden: fewer than k)."""
    if count.value == 0:
        return count
    noise = count.noise or 0
    value = max(1, count.value + noise)
    return Count(value, min(value, max(1, count.children + noise)), noise, count.statistics)
