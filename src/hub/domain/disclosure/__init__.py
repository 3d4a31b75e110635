"""Disclosure control for coordinators' aggregates: base-table noise, threshold, complementary suppression.

Plain Python, no I/O, no clock. The query layer computes a table of counts over referrals and calls
:func:`protect` once per answer; only the :class:`ProtectedTable` it returns may leave the hub.

**The base table.** Every count the query layer hands in is a sum over *base cells*: the finest cells it
keeps (for the flows: a measure × wellbeing dimension × ISO week × sender and recipient municipality and
organisation type × kind × Trappan step), which no filter or grouping can split. Each base cell has an
*adjustment* (:func:`adjustment`), fixed once and for all by the cell's secret key and its number of
distinct children. With noise on, everything :func:`protect` publishes, and every decision to hide, is
computed from the *adjusted* counts (true count plus the sum of its base cells' adjustments): a function
of one perturbed base table. So asking more questions never draws new noise to average away, the
difference of two overlapping answers is a sum of adjusted base cells, and whatever an attacker asks, it
learns at most one adjusted reading of each base cell (see ``docs/coordinators.md``).

**The contract (what the query layer hands in).** A :class:`Table` is a mapping from *keys* (tuples of
dimension values, e.g. ``("grundskola", "bup")``) to :class:`Count`\\ s, plus the :class:`Sum`\\ s that say
which keys are totals of which others. Every key, cell or total, carries:

- ``value``: the number to publish, a count (referrals, children, rejections…), over its base cells;
- ``children``: how many children it rests on (so ``value >= children``, and ``value == 0`` exactly when
  ``children == 0``). With noise on, the sum over its base cells of each cell's *distinct* children (a
  child in two base cells counts in both: the figure must be a sum to be adjusted); with noise off, the
  distinct children of the whole group;
- ``noise``: the sum of its base cells' :func:`adjustment`\\ s. Required for non-zero counts while noise
  is on;
- ``statistics``: optional per-key statistics such as median and 90th-percentile lead time, each with
  the children it was computed from (adjusted the same way, with its own ``noise``).

A total's ``value`` is normally the sum of its parts' values (additive counts); for a count of distinct
children it lies between the largest part and the sum. The method assumes the worst case, that an
attacker can use every total as an exact sum. Each key may take part in at most two sums (as a part or
as the total): that covers a 1-D list with its total (:meth:`Table.one_way`), a 2-D cross table with
row, column and grand totals (:meth:`Table.two_way`, e.g. the flow matrix sender type → receiver type)
and a hierarchy of groupings (build the :class:`Sum`\\ s yourself: leaves → group totals → grand total).
Deeper linked tables (a 3-D table with all its 2-D margins) are refused: ask them as several 2-D tables.

**What comes back.** For every key a :class:`Published`: the value to show (``None`` = hidden) and its
statistics (``None`` = hidden), plus notes in Swedish and English to show beside the table. Why each key
was hidden (primary/secondary) is in :attr:`ProtectedTable.suppression_log`, for the audit log only:
showing which hidden cells are the small ones narrows down what they can be.

**The method** (see ``docs/coordinators.md`` for the reasoning), on the adjusted counts when noise is on
(on by default) and on the true ones when it is off:

1. *Primary suppression*: a key with ``1 <= children < k`` is hidden (``k`` from :class:`DisclosureRules`,
   default 5, never below 3). Zeros are published as 0: an empty cell describes no child.
2. *Complementary suppression*, until stable: every sum with a hidden key has at least two hidden keys;
   when its total is published, the hidden parts together rest on at least ``k`` children (otherwise the
   total minus the published parts reveals a small group); and every primary key must lie on a "cycle"
   of hidden keys along which it can change by one while every sum still holds and every hidden count
   stays at least 1 — a second integer solution, so no attacker can pin its value from the totals.
   Complements are chosen cheapest first (small values; cells before totals; a total only when needed).
3. A published count is its adjusted value, at least ``k`` (it rests on at least ``k`` adjusted children).
   Adjusted counts are sums of adjusted base cells, so published parts add up to their published totals.
4. Statistics are shown only for published keys and only when computed from at least ``k`` children
   (or the statistic's own minimum, e.g. ``2k`` for a 90th percentile).
"""

from __future__ import annotations

from hub.domain.disclosure.noise import (
    ADJUSTMENTS,
    CELL_KEY_MODULUS,
    DRAWS,
    NOISE_TABLE,
    adjustment,
    combine_record_keys,
    record_key,
)
from hub.domain.disclosure.suppression import SuppressionProblem
from hub.domain.disclosure.table import (
    DEFAULT_K,
    MIN_K,
    TOTAL,
    Count,
    DisclosureRules,
    Key,
    Period,
    ProtectedTable,
    Published,
    Statistic,
    Sum,
    SuppressionReason,
    Table,
)

__all__ = [
    "ADJUSTMENTS",
    "CELL_KEY_MODULUS",
    "DEFAULT_K",
    "DRAWS",
    "MIN_K",
    "NOISE_TABLE",
    "TOTAL",
    "Count",
    "DisclosureRules",
    "Key",
    "Period",
    "ProtectedTable",
    "Published",
    "Statistic",
    "Sum",
    "SuppressionReason",
    "Table",
    "adjustment",
    "combine_record_keys",
    "protect",
    "rate",
    "record_key",
]


def rate(numerator: Published, denominator: Published) -> float | None:
    """A share (e.g. rejections / referrals) from *published* counts only, so it reveals nothing the
    counts do not; ``None`` if either is hidden or the denominator is 0. Never compute a rate from the
    true counts: an exact ratio of small numbers gives them away."""
    if numerator.value is None or denominator.value is None or denominator.value == 0:
        return None
    return numerator.value / denominator.value


def protect(table: Table, *, rules: DisclosureRules | None = None) -> ProtectedTable:
    """Apply the threshold, complementary suppression and (unless ``rules.noise`` is off) cell-key noise
    to ``table``. Deterministic: the same table and rules always give the same answer, whatever the
    order of its keys. Raises :class:`InvalidInput` if the table breaks the contract in the module
    docstring (negative or inconsistent counts, a missing cell key, a key in more than two sums…)."""
    rules = rules if rules is not None else DisclosureRules()
    problem = SuppressionProblem(table, rules)
    problem.suppress()
    return problem.publish()
