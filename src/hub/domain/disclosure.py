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

import hashlib
import heapq
import hmac
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from hub.domain.errors import Explanation, FieldError, InvalidInput

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

Key = tuple[str, ...]
"""A cell's or total's key: its dimension values, e.g. ``("grundskola", "bup")``."""

TOTAL: Final = "*"
"""The dimension value the constructors use for "all" in a total's key: ``("grundskola", "*")``."""

MIN_K: Final = 3
DEFAULT_K: Final = 5
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

_MAX_NOISE: Final = max(NOISE_TABLE)

Period = Literal["day", "week", "month", "quarter", "year"]
_PERIODS: Final[tuple[Period, ...]] = ("day", "week", "month", "quarter", "year")

SuppressionReason = Literal["primary", "secondary"]
_GROUND: Final = -1


@dataclass(frozen=True)
class DisclosureRules:
    """How strictly to protect. ``k``: the fewest children a published number may rest on (default 5,
    never below 3). ``noise``: cell-key noise on published counts; turn it off only for a table published
    once on its own (never for interactive queries, whose overlaps it protects). ``finest_period``: the
    finest time grouping a query may use (default a week)."""

    k: int = DEFAULT_K
    noise: bool = True
    finest_period: Period = "week"

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < MIN_K:
            raise InvalidInput(
                f"The disclosure threshold k must be a whole number of at least {MIN_K}; got {self.k!r}.",
                errors=[FieldError("k", f"must be an integer >= {MIN_K}", "too-small")],
            )
        if self.finest_period not in _PERIODS:
            raise InvalidInput(
                f"Unknown period {self.finest_period!r}; use one of {', '.join(_PERIODS)}.",
                errors=[FieldError("finest_period", "unknown period")],
            )

    def check_period(self, period: str) -> None:
        """Raise :class:`InvalidInput` unless a query may group or filter time by ``period``."""
        if period not in _PERIODS:
            raise InvalidInput(f"Unknown period {period!r}.", errors=[FieldError("period", "unknown period")])
        if _PERIODS.index(period) < _PERIODS.index(self.finest_period):
            raise InvalidInput(
                f"Time can be grouped by {self.finest_period} at the finest, not by {period}.",
                errors=[FieldError("period", f"finer than {self.finest_period}", "too-fine")],
            )


@dataclass(frozen=True)
class Statistic:
    """A statistic for one key (e.g. median lead time in days), how many children it was computed from
    (those with the event measured, often fewer than the key's children; with noise on a sum over base
    cells like a count's, with its ``noise``), and the fewest it may rest on (default ``k``)."""

    value: float
    children: int
    noise: int = 0
    min_children: int | None = None


@dataclass(frozen=True)
class Count:
    """What the query layer computed for one key; see the module docstring for each field."""

    value: int
    children: int
    noise: int | None = None
    statistics: Mapping[str, Statistic] = field(default_factory=dict)


@dataclass(frozen=True)
class Sum:
    """``total`` is published as the sum of ``parts`` (an attacker may treat it as exact)."""

    total: Key
    parts: tuple[Key, ...]


@dataclass(frozen=True)
class Table:
    """Counts by key plus the sums linking them. Use the constructors for the usual shapes."""

    counts: Mapping[Key, Count]
    sums: tuple[Sum, ...] = ()

    @classmethod
    def one_way(cls, counts: Mapping[str, Count], *, total: Count | None = None) -> Table:
        """A list of counts keyed ``(label,)``, with its total keyed ``("*",)`` if given."""
        _check_labels(counts)
        table: dict[Key, Count] = {(label,): count for label, count in counts.items()}
        if total is None:
            return cls(table)
        table[(TOTAL,)] = total
        return cls(table, (Sum((TOTAL,), tuple((label,) for label in counts)),))

    @classmethod
    def two_way(
        cls,
        counts: Mapping[tuple[str, str], Count],
        *,
        rows: Mapping[str, Count] | None = None,
        columns: Mapping[str, Count] | None = None,
        total: Count | None = None,
    ) -> Table:
        """A cross table keyed ``(row, column)``; row totals ``(row, "*")``, column totals ``("*", column)``
        and the grand total ``("*", "*")`` when given. Absent cells are zeros: leave them out."""
        _check_labels([label for key in counts for label in key], rows or (), columns or ())
        table: dict[Key, Count] = {key: count for key, count in counts.items()}
        sums: list[Sum] = []
        if rows is not None:
            table.update({(row, TOTAL): count for row, count in rows.items()})
            sums += [Sum((row, TOTAL), tuple(key for key in counts if key[0] == row)) for row in rows]
        if columns is not None:
            table.update({(TOTAL, column): count for column, count in columns.items()})
            sums += [Sum((TOTAL, col), tuple(key for key in counts if key[1] == col)) for col in columns]
        if total is not None:
            table[(TOTAL, TOTAL)] = total
            if rows is not None:
                sums.append(Sum((TOTAL, TOTAL), tuple((row, TOTAL) for row in rows)))
            if columns is not None:
                sums.append(Sum((TOTAL, TOTAL), tuple((TOTAL, col) for col in columns)))
            if rows is None and columns is None:
                sums.append(Sum((TOTAL, TOTAL), tuple(counts)))
        stray = [key for key in counts if (rows is not None and key[0] not in rows)]
        stray += [key for key in counts if (columns is not None and key[1] not in columns)]
        if stray:
            raise InvalidInput(
                "Every cell's row and column needs its total when totals are given.",
                errors=[FieldError(f"counts[{key!r}]", "row or column has no total", "no-total") for key in stray],
            )
        return cls(table, tuple(sums))


@dataclass(frozen=True)
class Published:
    """One key as it may be shown: ``value`` ``None`` means hidden; so does a statistic's ``None``."""

    value: int | None
    statistics: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def suppressed(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class ProtectedTable:
    """The answer: ``cells`` and ``totals`` in the input order, ``notes`` to show beside them.
    ``suppression_log`` says why each hidden key is hidden — write it to the audit log, never show it."""

    cells: Mapping[Key, Published]
    totals: Mapping[Key, Published]
    notes: tuple[Explanation, ...]
    rules: DisclosureRules
    suppression_log: Mapping[Key, SuppressionReason]

    def __getitem__(self, key: Key) -> Published:
        return self.cells[key] if key in self.cells else self.totals[key]

    def items(self) -> Iterator[tuple[Key, Published]]:
        """Cells, then totals."""
        yield from self.cells.items()
        yield from self.totals.items()


def _check_labels(*labels: Iterable[str]) -> None:
    if any(label == TOTAL for group in labels for label in group):
        raise InvalidInput(
            f"{TOTAL!r} is reserved for totals and cannot be a dimension value.",
            errors=[FieldError("counts", f"{TOTAL!r} is reserved", "reserved")],
        )


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
    problem = _Problem(table, rules)
    problem.suppress()
    return problem.publish()


# ------------------------------------------------------------------------------------------- engine


def _adjusted(count: Count) -> Count:
    """A count as the method sees it with noise on: value and children each plus the base cells'
    adjustments. A non-empty count stays at least 1, as the suppression's equations assume (it is then
    hidden: fewer than k)."""
    if count.value == 0:
        return count
    noise = count.noise or 0
    value = max(1, count.value + noise)
    return Count(value, min(value, max(1, count.children + noise)), noise, count.statistics)


def _check_keys(table: Table) -> None:
    bad = [
        FieldError(f"counts[{key!r}]", "a key is a tuple of strings; a count has integer value and children")
        for key, count in table.counts.items()
        if not isinstance(key, tuple)
        or not all(isinstance(part, str) for part in key)
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in (count.value, count.children))
    ]
    bad += [
        FieldError("sums", "a sum names keys (tuples of strings)") for s in table.sums if not isinstance(s.total, tuple)
    ]
    if bad:
        raise InvalidInput("The table cannot be protected as given.", errors=bad)


class _Problem:
    """The table as a graph: each sum is a node, each key an edge between the (at most two) sums it is
    in, or between its sum and a free "ground" node. A change of +-1 along a cycle of hidden keys, signs
    propagated so every sum on the way still balances, is a second solution an attacker cannot exclude."""

    def __init__(self, table: Table, rules: DisclosureRules) -> None:
        self.rules = rules
        self.k = rules.k
        self.counts = dict(table.counts)
        self.order = list(table.counts)
        _check_keys(table)
        self.keys = sorted(self.counts)
        self.sums = sorted(table.sums, key=lambda s: (s.total, sorted(s.parts)))
        self.coef: list[dict[Key, int]] = []
        self.in_sums: dict[Key, list[int]] = {key: [] for key in self.keys}
        self.hidden: dict[Key, SuppressionReason] = {}
        self._validate(table)
        if rules.noise:  # from here on every decision and every published value is the adjusted one
            self.counts = {key: _adjusted(count) for key, count in self.counts.items()}
        self.ground_edges = [key for key in self.keys if len(self.in_sums[key]) == 1]

    # --------------------------------------------------------------------------------- validation

    def _validate(self, table: Table) -> None:
        errors: list[FieldError] = []
        for key, count in table.counts.items():
            where = f"counts[{key!r}]"
            if count.value < 0 or count.children < 0:
                errors.append(FieldError(where, "counts cannot be negative", "negative"))
            elif count.children > count.value or (count.value > 0) != (count.children > 0):
                errors.append(FieldError(where, "children must be between 1 and value, or both 0", "children"))
            if self.rules.noise and count.value > 0 and count.noise is None:
                errors.append(FieldError(f"{where}.noise", "required while noise is on", "missing"))
            for name, stat in count.statistics.items():
                if not 0 <= stat.children <= count.children or (stat.min_children or self.k) < self.k:
                    errors.append(FieldError(f"{where}.statistics.{name}", "children out of range", "children"))
        for index, total in enumerate(self.sums):
            members = [total.total, *total.parts]
            missing = [key for key in members if key not in self.counts]
            if missing or len(set(members)) != len(members):
                errors.append(FieldError(f"sums[{total.total!r}]", "unknown or repeated keys", "sum-keys"))
                self.coef.append({})
                continue
            self.coef.append({total.total: -1, **{part: 1 for part in sorted(total.parts)}})
            for key in members:
                self.in_sums[key].append(index)
            whole, parts = self.counts[total.total], [self.counts[part] for part in total.parts]
            for attr in ("value", "children"):
                amounts = [getattr(part, attr) for part in parts]
                if not max(amounts, default=0) <= getattr(whole, attr) <= sum(amounts):
                    errors.append(FieldError(f"sums[{total.total!r}].{attr}", "total inconsistent", "sum"))
        errors += [
            FieldError(f"counts[{key!r}]", "a key may be in at most two sums", "linked")
            for key, sums in self.in_sums.items()
            if len(sums) > 2
        ]
        if errors:
            raise InvalidInput("The table cannot be protected as given.", errors=errors)

    # ------------------------------------------------------------------------------- suppression

    def value(self, key: Key) -> int:
        return self.counts[key].value

    def suppress(self) -> None:
        primaries = [key for key in self.keys if 0 < self.counts[key].children < self.k]
        self.hidden = {key: "primary" for key in primaries}
        done: set[Key] = set()  # protected (a cycle of hidden keys stays a cycle), or nothing left to hide
        while True:
            self._line_rules()
            for key in primaries:
                if key in done:
                    continue
                if self._is_protected(key):
                    done.add(key)
                    continue
                if not self._repair(key):
                    done.add(key)
                break
            else:
                return

    def _line_rules(self) -> None:
        changed = True
        while changed:
            changed = False
            for index in range(len(self.sums)):
                members = self.coef[index]
                hidden = [key for key in members if key in self.hidden]
                if hidden and (len(hidden) == 1 or not self._group_ok(index, hidden)):
                    changed |= self._hide_cheapest(index)

    def _group_ok(self, index: int, hidden: list[Key]) -> bool:
        """With the total published, the hidden parts' sum is revealed: it must rest on >= k children."""
        total = self.sums[index].total
        if total in self.hidden:
            return True
        shown = sum(self.counts[key].children for key in self.sums[index].parts if key not in self.hidden)
        at_least = max(self.counts[total].children - shown, *(self.counts[key].children for key in hidden))
        return at_least >= self.k

    def _hide_cheapest(self, index: int) -> bool:
        def cost(key: Key) -> tuple[int, int, int, Key]:
            others = [s for s in self.in_sums[key] if s != index]
            hidden_there = [sum(1 for m in self.coef[s] if m in self.hidden) for s in others]
            # Prefer a key whose other sum has a lone hidden key (fixing it too); avoid starting a new one.
            penalty = 0 if 1 in hidden_there else 2 if 0 in hidden_there else 1
            return (penalty, self.coef[index][key] < 0, self.value(key), key)

        candidates = [key for key in self.coef[index] if key not in self.hidden and self.value(key) > 0]
        if not candidates:
            return False
        self.hidden[min(candidates, key=cost)] = "secondary"
        return True

    def _is_protected(self, key: Key) -> bool:
        return not self.in_sums[key] or any(self._cycle(key, sign, False) is not None for sign in (1, -1))

    def _repair(self, key: Key) -> bool:
        """Hide the cheapest published keys that complete a protecting cycle; False if nothing was hidden."""
        found = [cycle for sign in (1, -1) if (cycle := self._cycle(key, sign, True)) is not None]
        if found and min(found)[1]:
            for member in min(found)[1]:
                self.hidden[member] = "secondary"
            return True
        # Fallback (not expected for 1-D, 2-D and hierarchies): hide the cheapest neighbour and retry.
        neighbours = {m for s in self.in_sums[key] for m in self.coef[s] if m not in self.hidden and self.value(m)}
        if not neighbours:
            return False
        self.hidden[min(neighbours, key=lambda m: (self.value(m), m))] = "secondary"
        return True

    def _other_end(self, key: Key, node: int) -> int:
        sums = self.in_sums[key]
        return _GROUND if len(sums) == 1 else sums[1] if sums[0] == node else sums[0]

    def _cycle(self, start: Key, sign: int, allow_shown: bool) -> tuple[tuple[int, int], list[Key]] | None:
        """The cheapest simple cycle through ``start`` (changed by ``sign``) whose keys are all hidden —
        or, with ``allow_shown``, may be published non-zero keys at the cost of their values. Returns
        ((cost, length), keys to hide) or None. Dijkstra over (sum, incoming balance) states."""
        if self.value(start) + sign < 1:
            return None
        first = self.in_sums[start][0]
        target = self._other_end(start, first)
        State = tuple[int, int]
        begin: State = (first, self.coef[first][start] * sign)
        best: dict[State, tuple[int, int]] = {begin: (0, 0)}
        parent: dict[State, tuple[State, Key]] = {}
        heap: list[tuple[int, int, State]] = [(0, 0, begin)]
        while heap:
            cost, length, state = heapq.heappop(heap)
            if best.get(state, (cost, length)) < (cost, length):
                continue
            node, balance = state
            moves: list[tuple[Key, int]]
            if node == _GROUND:
                moves = [(key, d) for key in self.ground_edges for d in (1, -1)]
            else:
                moves = [(key, -balance * c) for key, c in self.coef[node].items()]
            for key, change in moves:
                if key == start or self.value(key) + change < 1:
                    continue
                if key not in self.hidden and not (allow_shown and self.value(key) > 0):
                    continue
                step = 0 if key in self.hidden else self.value(key)
                nxt = self.in_sums[key][0] if node == _GROUND else self._other_end(key, node)
                if nxt == target:
                    closes = target == _GROUND or (
                        self.coef[target][key] * change + self.coef[target][start] * sign == 0
                    )
                    path = self._path(parent, state, key) if closes else None
                    if path is not None and self._simple(path, target):
                        return (cost + step, length + 1), [k for _, k in path if k not in self.hidden]
                    continue
                if nxt == first:
                    continue
                state2: State = (nxt, 0 if nxt == _GROUND else self.coef[nxt][key] * change)
                if state2 not in best or (cost + step, length + 1) < best[state2]:
                    best[state2] = (cost + step, length + 1)
                    parent[state2] = (state, key)
                    heapq.heappush(heap, (cost + step, length + 1, state2))
        return None

    @staticmethod
    def _path(
        parent: Mapping[tuple[int, int], tuple[tuple[int, int], Key]], last: tuple[int, int], key: Key
    ) -> list[tuple[int, Key]]:
        path = [(last[0], key)]
        state = last
        while state in parent:
            state, via = parent[state]
            path.append((state[0], via))
        return path[::-1]

    @staticmethod
    def _simple(path: list[tuple[int, Key]], target: int) -> bool:
        nodes = [node for node, _ in path]
        keys = [key for _, key in path]
        return len(set(nodes)) == len(nodes) and len(set(keys)) == len(keys) and target not in nodes[1:]

    # ---------------------------------------------------------------------------------- publish

    def publish(self) -> ProtectedTable:
        totals = {s.total for s in self.sums}
        cells: dict[Key, Published] = {}
        shown_totals: dict[Key, Published] = {}
        for key in self.order:
            (shown_totals if key in totals else cells)[key] = self._published(key)
        log = {key: self.hidden[key] for key in self.order if key in self.hidden}
        return ProtectedTable(cells, shown_totals, self._notes(), self.rules, log)

    def _published(self, key: Key) -> Published:
        count = self.counts[key]
        if key in self.hidden:
            return Published(None, {name: None for name in count.statistics})
        rests_on = {name: s.children + (s.noise if self.rules.noise else 0) for name, s in count.statistics.items()}
        stats = {
            name: s.value if rests_on[name] >= (s.min_children or self.k) else None
            for name, s in count.statistics.items()
        }
        return Published(count.value, stats)

    def _notes(self) -> tuple[Explanation, ...]:
        k = self.k
        adjusted_sv, adjusted_en = (" efter justeringen", " after the adjustment") if self.rules.noise else ("", "")
        notes = [
            Explanation(
                "disclosure.threshold",
                f"Värden som{adjusted_sv} bygger på färre än {k} barn visas inte, och inte heller andra värden som "
                "skulle göra det möjligt att räkna fram dem ur summorna.",
                f"Values resting on fewer than {k} children{adjusted_en} are hidden, as are other values that "
                "would let them be worked out from the totals.",
            )
        ]
        if self.rules.noise:
            notes.append(
                Explanation(
                    "disclosure.noise",
                    "Varje antal är en summa av de minsta celler hubben håller, var och en justerad en gång för "
                    f"alla med högst ±{_MAX_NOISE}. Samma celler ger alltid samma tal hur frågan än ställs, så "
                    "justeringen kan inte medlas bort; delarna summerar till totalerna.",
                    "Every count is a sum of the finest cells the hub keeps, each adjusted once and for all by "
                    f"at most ±{_MAX_NOISE}. The same cells always give the same number however the question "
                    "is asked, so the adjustment cannot be averaged away; parts add up to their totals.",
                )
            )
        if any(count.statistics for count in self.counts.values()):
            notes.append(
                Explanation(
                    "disclosure.statistics",
                    f"Ledtider och andra mått visas bara när de bygger på minst {k} barn.",
                    f"Lead times and other statistics are shown only when based on at least {k} children.",
                )
            )
        return tuple(notes)
