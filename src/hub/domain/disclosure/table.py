"""The disclosure contract's shapes: the rules, the counts the query layer hands in, the sums linking
them, and what comes back (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from hub.domain.errors import Explanation, FieldError, InvalidInput

Key = tuple[str, ...]
"""A cell's or total's key: its dimension values, e.g. ``("grundskola", "bup")``."""

TOTAL: Final = "*"
"""The dimension value the constructors use for "all" in a total's key: ``("grundskola", "*")``."""

MIN_K: Final = 3
DEFAULT_K: Final = 5

Period = Literal["day", "week", "month", "quarter", "year"]
_PERIODS: Final[tuple[Period, ...]] = ("day", "week", "month", "quarter", "year")

SuppressionReason = Literal["primary", "secondary"]


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
