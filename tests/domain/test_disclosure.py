"""Disclosure control for coordinators' aggregates (``hub.domain.disclosure``).

The property tests play the attacker against tables built the way the query layer builds them: from
referral records grouped into base cells (municipality × sender type × receiver type here), each with
its distinct children, a cell key from their record keys and the adjustment that key draws:

- nothing resting on fewer than k children (adjusted, with noise on) is ever published, counts or
  statistics;
- published counts are the true ones (noise off) or the adjusted ones, at least k (noise on); with noise
  on, the whole answer is the noise-off answer of the adjusted table: every decision is the adjusted
  base table's;
- the answer is deterministic and does not depend on the order of the keys or sums;
- every sum has no hidden key or at least two, and hidden parts of a published total rest on >= k children;
- (i) margins: with exact published values (noise off, the strongest case), an attacker who knows every
  published number and every sum cannot pin any primary-hidden key: a brute-force integer search finds a
  second solution for it, and no linear combination of the sums isolates it;
- (ii) differencing and averaging: any number of queries that differ by one municipality give the same
  difference, the municipality's adjusted base cells; and one adjusted reading never leaves an attacker
  who knows the method 90 % sure of a count.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from statistics import median
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.domain.disclosure import (
    ADJUSTMENTS,
    DRAWS,
    NOISE_TABLE,
    TOTAL,
    Count,
    DisclosureRules,
    Key,
    ProtectedTable,
    Published,
    Statistic,
    Sum,
    Table,
    adjustment,
    combine_record_keys,
    protect,
    rate,
    record_key,
)
from hub.domain.errors import InvalidInput

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXACT = DisclosureRules(noise=False)

MUNICIPALITIES = ("hallsberg", "kumla", "lekeberg", "orebro")
SENDERS = ("bvc", "elevhalsa", "grundskola")
RECEIVERS = ("bup", "socialtjanst", "vardcentral")
GROUPS = {"bup": "region", "vardcentral": "region", "socialtjanst": "kommun"}
Measure = Literal["referrals", "children"]


# ------------------------------------------------------------------ the query layer, as tests see it


@dataclass(frozen=True)
class Referral:
    child: int
    municipality: str
    sender: str
    receiver: str
    lead_time: int | None


@dataclass(frozen=True)
class Data:
    referrals: tuple[Referral, ...]
    secret: bytes


def base_cell(r: Referral) -> tuple[str, str, str]:
    return (r.municipality, r.sender, r.receiver)


def adjusted_cells(data: Data, rows: list[Referral]) -> tuple[int, int]:
    """Per base cell of ``rows`` (every query selects whole cells), its distinct children and the
    adjustment its cell key draws, summed: (children, noise)."""
    cells: dict[tuple[str, str, str], set[int]] = {}
    for r in rows:
        cells.setdefault(base_cell(r), set()).add(r.child)
    noise = 0
    for children in cells.values():
        key = combine_record_keys(record_key(data.secret, f"child-{c}") for c in children)
        noise += adjustment(len(children), key % DRAWS)
    return sum(len(children) for children in cells.values()), noise


def count_of(data: Data, referrals: Iterable[Referral], measure: Measure = "referrals") -> Count:
    """Referrals (children counted per base cell, as the query layer does) or distinct children (a count
    whose totals are not sums of their parts), with the base cells' adjustments."""
    rows = list(referrals)
    per_cell, noise = adjusted_cells(data, rows)
    distinct = len({r.child for r in rows})
    timed = [r for r in rows if r.lead_time is not None]
    stats = {}
    if timed:
        lead_times = [r.lead_time for r in timed if r.lead_time is not None]
        timed_children, timed_noise = adjusted_cells(data, timed)
        if measure == "children":
            timed_children = len({r.child for r in timed})
        stats["lead_time_median_days"] = Statistic(float(median(lead_times)), timed_children, timed_noise)
    if measure == "children":
        return Count(distinct, distinct, noise, stats)
    return Count(len(rows), per_cell, noise, stats)


def flow_table(data: Data, measure: Measure = "referrals", keep: Callable[[Referral], bool] = lambda r: True) -> Table:
    """The flow matrix sender type -> receiver type with all totals, over the kept referrals."""
    rs = [r for r in data.referrals if keep(r)]
    cells = {
        (s, t): count_of(data, (r for r in rs if (r.sender, r.receiver) == (s, t)), measure)
        for s in SENDERS
        for t in RECEIVERS
        if any((r.sender, r.receiver) == (s, t) for r in rs)
    }
    return Table.two_way(
        cells,
        rows={s: count_of(data, (r for r in rs if r.sender == s), measure) for s in SENDERS},
        columns={t: count_of(data, (r for r in rs if r.receiver == t), measure) for t in RECEIVERS},
        total=count_of(data, rs, measure),
    )


def one_way_table(data: Data, measure: Measure = "referrals") -> Table:
    """Counts by municipality with the county total."""
    rs = data.referrals
    counts = {m: count_of(data, (r for r in rs if r.municipality == m), measure) for m in MUNICIPALITIES}
    return Table.one_way(counts, total=count_of(data, rs, measure))


def tree_table(data: Data, measure: Measure = "referrals") -> Table:
    """Receiver type -> receiver group (region/kommun) -> all: a hierarchy."""
    rs = data.referrals
    counts: dict[Key, Count] = {(t,): count_of(data, (r for r in rs if r.receiver == t), measure) for t in RECEIVERS}
    groups = sorted(set(GROUPS.values()))
    counts |= {(g, TOTAL): count_of(data, (r for r in rs if GROUPS[r.receiver] == g), measure) for g in groups}
    counts[(TOTAL,)] = count_of(data, rs, measure)
    sums = [Sum((g, TOTAL), tuple((t,) for t in RECEIVERS if GROUPS[t] == g)) for g in groups]
    sums.append(Sum((TOTAL,), tuple((g, TOTAL) for g in groups)))
    return Table(counts, tuple(sums))


SHAPES: dict[str, Callable[[Data, Measure], Table]] = {"flow": flow_table, "one_way": one_way_table, "tree": tree_table}


@st.composite
def datasets(draw: st.DrawFn, max_children: int = 30) -> Data:
    referrals: list[Referral] = []
    for child in range(draw(st.integers(0, max_children))):
        municipality = draw(st.sampled_from(MUNICIPALITIES))
        for _ in range(draw(st.integers(1, 3))):
            referrals.append(
                Referral(
                    child,
                    municipality,
                    draw(st.sampled_from(SENDERS)),
                    draw(st.sampled_from(RECEIVERS)),
                    draw(st.none() | st.integers(0, 90)),
                )
            )
    return Data(tuple(referrals), draw(st.binary(min_size=1, max_size=8)))


@st.composite
def tables(draw: st.DrawFn, max_children: int = 30) -> tuple[Table, Measure]:
    measure: Measure = draw(st.sampled_from(["referrals", "children"]))
    shape = draw(st.sampled_from(sorted(SHAPES)))
    return SHAPES[shape](draw(datasets(max_children)), measure), measure


@st.composite
def cross_tables(draw: st.DrawFn, max_side: int = 7) -> tuple[Table, Measure]:
    """A wider cross table (up to 7 x 7) with many small cells; children are disjoint across cells."""
    n_rows, n_cols = draw(st.integers(2, max_side)), draw(st.integers(2, max_side))
    small = st.sampled_from([0, 0, 1, 2, 3, 4, 5, 6, 8, 12, 20])
    cells: dict[tuple[str, str], Count] = {}
    for i in range(n_rows):
        for j in range(n_cols):
            children = draw(small)
            if children:
                extra = draw(st.integers(0, 2))
                noise = adjustment(children, draw(st.integers(0, DRAWS - 1)))
                cells[(f"r{i}", f"c{j}")] = Count(children + extra, children, noise)

    def total(keys: list[tuple[str, str]]) -> Count:
        parts = [cells[k] for k in keys]
        return Count(sum(c.value for c in parts), sum(c.children for c in parts), sum(c.noise or 0 for c in parts))

    rows = {f"r{i}": total([k for k in cells if k[0] == f"r{i}"]) for i in range(n_rows)}
    columns = {f"c{j}": total([k for k in cells if k[1] == f"c{j}"]) for j in range(n_cols)}
    return Table.two_way(cells, rows=rows, columns=columns, total=total(list(cells))), "referrals"


rules_strategy = st.builds(DisclosureRules, k=st.integers(3, 7), noise=st.booleans())


# ------------------------------------------------------------------------------------- attackers


def pins(table: Table, answer: ProtectedTable, target: Key) -> bool:
    """Integer attacker on one table with exact published values: can ``target`` take only its true
    value, given every published number, every sum, and that a hidden count is >= 1 (zeros are never
    hidden)? Searches for a second solution with ``target`` moved by 1..3, nearest values first; a found
    solution proves the attacker cannot pin it."""
    truth = {key: count.value for key, count in table.counts.items()}
    known = {key: shown.value for key, shown in answer.items() if shown.value is not None}
    hidden = [key for key, shown in answer.items() if shown.value is None]
    ceiling = sum(truth.values()) + 4
    budget = [0]

    def solve(assign: dict[Key, int]) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        assign = dict(assign)
        changed = True
        while changed:
            changed = False
            for s in table.sums:
                open_ = [k for k in (s.total, *s.parts) if k not in assign]
                rest = sum(assign[p] for p in s.parts if p in assign)
                if s.total in assign and rest + len([p for p in open_ if p != s.total]) > assign[s.total]:
                    return False  # the open parts cannot all be >= 1
                if not open_:
                    if assign[s.total] != rest:
                        return False
                elif len(open_) == 1:
                    (key,) = open_
                    assign[key] = rest if key == s.total else assign[s.total] - rest
                    changed = True
        free = [key for key in hidden if key not in assign]
        if not free:
            return True

        def ceiling_of(key: Key) -> int:
            bounds = [
                assign[s.total] - sum(assign[p] for p in s.parts if p in assign)
                for s in table.sums
                if key in s.parts and s.total in assign
            ]
            return min(bounds, default=ceiling)

        key = min(free, key=lambda k: (ceiling_of(k), k))
        candidates = sorted(range(1, ceiling_of(key) + 1), key=lambda v: abs(v - truth[key]))
        return any(solve({**assign, key: v}) for v in candidates)

    for shift in (1, -1, 2, -2, 3, -3):
        budget[0] = 5_000
        if truth[target] + shift >= 1 and solve({**known, target: truth[target] + shift}):
            return False
    return True


def linearly_determined(table: Table, answer: ProtectedTable) -> set[Key]:
    """Hidden keys that some linear combination of the sums isolates exactly (Gaussian elimination)."""
    hidden = [key for key, shown in answer.items() if shown.value is None]
    column = {key: i for i, key in enumerate(hidden)}
    rows: list[list[Fraction]] = []
    for s in table.sums:
        row = [Fraction(0)] * len(hidden)
        for key, coef in [(s.total, -1), *((p, 1) for p in s.parts)]:
            if key in column:
                row[column[key]] += coef
        if any(row):
            rows.append(row)
    pivot_rows: list[tuple[int, list[Fraction]]] = []
    for col in range(len(hidden)):
        pick = next((r for r in rows if r[col] != 0), None)
        if pick is None:
            continue
        rows.remove(pick)
        pick = [x / pick[col] for x in pick]
        rows = [[a - r[col] * b for a, b in zip(r, pick, strict=True)] for r in rows]
        pivot_rows = [(c, [a - r[col] * b for a, b in zip(r, pick, strict=True)]) for c, r in pivot_rows]
        pivot_rows.append((col, pick))
    return {hidden[c] for c, r in pivot_rows if sum(1 for x in r if x != 0) == 1}


def adjusted_table(table: Table) -> Table:
    """The table as noise on sees it: every non-zero value and children plus its noise (at least 1), each
    statistic's children plus its own."""

    def one(c: Count) -> Count:
        if c.value == 0:
            return c
        value = max(1, c.value + (c.noise or 0))
        stats = {n: Statistic(s.value, s.children + s.noise, 0, s.min_children) for n, s in c.statistics.items()}
        return Count(value, min(value, max(1, c.children + (c.noise or 0))), None, stats)

    return Table({key: one(c) for key, c in table.counts.items()}, table.sums)


# ---------------------------------------------------------------------------------------- rules


@pytest.mark.parametrize("k", [2, 1, 0, -5])
def test_a_threshold_below_three_is_refused(k: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        DisclosureRules(k=k)
    assert caught.value.errors[0].pointer == "k"


def test_defaults_are_five_children_with_noise_and_weeks() -> None:
    rules = DisclosureRules()
    assert (rules.k, rules.noise, rules.finest_period) == (5, True, "week")
    assert DisclosureRules(k=3).k == 3


def test_time_is_grouped_by_week_at_the_finest_by_default() -> None:
    rules = DisclosureRules()
    for period in ("week", "month", "quarter", "year"):
        rules.check_period(period)
    with pytest.raises(InvalidInput):
        rules.check_period("day")
    with pytest.raises(InvalidInput):
        rules.check_period("hour")
    DisclosureRules(finest_period="day").check_period("day")


# ------------------------------------------------------------------------------------- examples


def count(value: int, children: int | None = None, noise: int = 0, **stats: Statistic) -> Count:
    return Count(value, value if children is None else children, noise, stats)


def test_a_small_cell_and_its_cheapest_complement_are_hidden_and_zeros_shown() -> None:
    table = Table.one_way(
        {"accepted": count(12, 10), "rejected": count(3), "withdrawn": count(0), "waiting": count(8, 6)},
        total=count(23, 19),
    )
    answer = protect(table, rules=EXACT)
    assert {key: shown.value for key, shown in answer.cells.items()} == {
        ("accepted",): 12,
        ("rejected",): None,
        ("withdrawn",): 0,
        ("waiting",): None,
    }
    assert answer.totals[(TOTAL,)].value == 23
    assert answer.suppression_log == {("rejected",): "primary", ("waiting",): "secondary"}


def test_flow_matrix_hides_a_rectangle_around_a_small_flow() -> None:
    cells = {("bvc", "bup"): count(2), ("bvc", "socialtjanst"): count(10, 9)}
    cells |= {("grundskola", "bup"): count(7, 6), ("grundskola", "socialtjanst"): count(9, 8)}
    table = Table.two_way(
        cells,
        rows={"bvc": count(12, 11), "grundskola": count(16, 14)},
        columns={"bup": count(9, 8), "socialtjanst": count(19, 17)},
        total=count(28, 25),
    )
    answer = protect(table, rules=EXACT)
    assert all(answer.cells[key].suppressed for key in cells)
    assert all(not shown.suppressed for shown in answer.totals.values())
    assert answer.suppression_log[("bvc", "bup")] == "primary"


def test_a_total_is_hidden_when_the_hidden_parts_would_otherwise_be_a_small_group() -> None:
    # Two hidden cells of 1 child each: the total minus the shown cell would reveal "2 children".
    table = Table.one_way({"a": count(1), "b": count(1), "c": count(20)}, total=count(22))
    answer = protect(table, rules=EXACT)
    assert answer[("c",)].suppressed or answer[(TOTAL,)].suppressed


def test_statistics_are_hidden_with_their_cell_and_when_based_on_few_children() -> None:
    table = Table.one_way(
        {
            "kumla": count(9, 8, lead_time_median_days=Statistic(12.0, 6), lead_time_p90_days=Statistic(40.0, 4)),
            "lekeberg": count(2, 2, lead_time_median_days=Statistic(30.0, 2)),
            "orebro": count(30, 25, lead_time_median_days=Statistic(9.5, 20)),
        },
        total=count(41, 35, lead_time_median_days=Statistic(11.0, 28)),
    )
    answer = protect(table, rules=EXACT)
    assert answer[("lekeberg",)].statistics == {"lead_time_median_days": None}
    assert answer[("kumla",)].suppressed  # the complement: the smallest other cell
    assert answer[("kumla",)].statistics == {"lead_time_median_days": None, "lead_time_p90_days": None}
    assert answer[("orebro",)].statistics == {"lead_time_median_days": 9.5}
    assert answer[(TOTAL,)].statistics == {"lead_time_median_days": 11.0}
    assert any(note.code == "disclosure.statistics" for note in answer.notes)


def test_notes_say_what_was_done_in_swedish_and_english() -> None:
    answer = protect(Table.one_way({"a": count(10)}, total=count(10)), rules=DisclosureRules(k=4))
    codes = [note.code for note in answer.notes]
    assert codes == ["disclosure.threshold", "disclosure.noise"]
    assert "färre än 4 barn" in answer.notes[0].sv and "fewer than 4 children" in answer.notes[0].en
    assert "±3" in answer.notes[1].sv and "±3" in answer.notes[1].en
    assert [n.code for n in protect(Table.one_way({"a": count(10)}), rules=EXACT).notes] == ["disclosure.threshold"]


def test_the_published_shape_carries_no_reason_for_hiding() -> None:
    # Showing which hidden cells are the small ones would narrow them down; the log is for auditors.
    assert {f.name for f in dataclasses.fields(Published)} == {"value", "statistics"}


def test_a_count_is_published_as_its_adjusted_value_whatever_the_table() -> None:
    alone = protect(Table.one_way({"a": count(9, noise=-2)}))
    inside = protect(Table.one_way({"b": count(30, noise=1), "a": count(9, noise=-2)}, total=count(39, noise=-1)))
    assert alone[("a",)].value == inside[("a",)].value == 7
    assert inside[(TOTAL,)].value == inside[("a",)].value + inside[("b",)].value, "the parts add up"
    assert protect(Table.one_way({"z": Count(0, 0)}))[("z",)].value == 0, "a zero is never adjusted"
    # Hidden or shown by the adjusted children: 6 children adjusted by -2 rest on 4.
    assert protect(Table.one_way({"a": count(6, noise=-2)}))[("a",)].suppressed
    assert protect(Table.one_way({"a": count(4, noise=1)}))[("a",)].value == 5


def test_the_adjustment_tables_are_fair_and_never_take_a_cell_below_zero() -> None:
    for children, row in ADJUSTMENTS.items():
        assert len(row) == DRAWS and sum(row) == 0, "no bias, however many cells a count sums"
        assert sorted(row) == sorted(-a for a in row), "symmetric"
        assert children + min(row) == 0 or (children >= 3 and min(row) == -3)
        assert {adjustment(children, draw) for draw in range(DRAWS)} == set(row)
    assert ADJUSTMENTS[3] == NOISE_TABLE and adjustment(7, 1) == NOISE_TABLE[1] and adjustment(0, 50) == 0


@pytest.mark.parametrize("k", [3, 5, 10])
def test_one_adjusted_reading_never_makes_an_attacker_90_percent_sure(k: int) -> None:
    """An attacker who reads a base cell's adjusted count (it can, by differencing) and knows the method
    but nothing of the count except that it is at least 1: for every reading, the posterior of every
    count stays below 0.9. The best guess for a count of 1 to k - 1 is right 40-70 % of the time."""
    counts = range(1, 40)

    def likelihood(reading: int, c: int) -> float:
        return ADJUSTMENTS[min(c, 3)].count(reading - c) / DRAWS

    for reading in range(0, 40):
        total = sum(likelihood(reading, c) for c in counts)
        if total:
            assert max(likelihood(reading, c) for c in counts) / total < 0.9, reading
    for c in range(1, k):
        right = sum(
            likelihood(reading, c)
            for reading in range(0, c + 4)
            if max(counts, key=lambda x: likelihood(reading, x)) == c
        )
        assert 0.35 < right <= 0.7, (c, right)


def test_record_and_cell_keys() -> None:
    assert record_key(b"secret", "k1:abc") == record_key(b"secret", "k1:abc")
    assert record_key(b"secret", "k1:abc") != record_key(b"other", "k1:abc")
    assert combine_record_keys([2**32 - 1, 2]) == 1
    assert combine_record_keys([]) == 0


def test_rates_come_from_published_counts_only() -> None:
    assert rate(Published(6), Published(24)) == 0.25
    assert rate(Published(None), Published(24)) is None
    assert rate(Published(6), Published(None)) is None
    assert rate(Published(0), Published(0)) is None


@pytest.mark.parametrize(
    ("table", "pointer"),
    [
        (Table.one_way({"a": Count(3, 4, 1)}), "counts[('a',)]"),
        (Table.one_way({"a": Count(3, 0, 1)}), "counts[('a',)]"),
        (Table.one_way({"a": Count(-1, 0, 1)}), "counts[('a',)]"),
        (Table.one_way({"a": Count(5, 5)}), "counts[('a',)].noise"),
        (Table.one_way({"a": count(5), "b": count(6)}, total=count(12)), "sums[('*',)].value"),
        (Table.one_way({"a": count(5), "b": count(6, 5)}, total=count(11, 4)), "sums[('*',)].children"),
        (Table({("a",): count(5)}, (Sum(("t",), (("a",),)),)), "sums[('t',)]"),
        (Table.one_way({"a": count(5, stat=Statistic(1.0, 6))}), "counts[('a',)].statistics.stat"),
        (Table.one_way({"a": count(5, stat=Statistic(1.0, 5, 0, 4))}), "counts[('a',)].statistics.stat"),
    ],
)
def test_tables_that_break_the_contract_are_refused(table: Table, pointer: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        protect(table)
    assert pointer in [error.pointer for error in caught.value.errors]


def test_a_key_in_three_sums_is_refused_and_star_is_reserved() -> None:
    counts = {(x,): count(5) for x in "abcd"} | {("t1",): count(10), ("t2",): count(10), ("t3",): count(10)}
    sums = (Sum(("t1",), (("a",), ("b",))), Sum(("t2",), (("a",), ("c",))), Sum(("t3",), (("a",), ("d",))))
    with pytest.raises(InvalidInput) as caught:
        protect(Table(counts, sums))
    assert "counts[('a',)]" in [error.pointer for error in caught.value.errors]
    with pytest.raises(InvalidInput):
        Table.one_way({TOTAL: count(5)})
    with pytest.raises(InvalidInput):
        Table.two_way({("a", "b"): count(5)}, rows={"x": count(5)})


def test_without_noise_two_overlapping_queries_give_a_small_count_away() -> None:
    # Why noise is on for interactive queries: all municipalities minus all-but-Lekeberg = Lekeberg's 1.
    referrals = [Referral(i, "orebro", "grundskola", "bup", None) for i in range(12)]
    data = Data((*referrals, Referral(99, "lekeberg", "grundskola", "bup", None)), b"s")
    cell = ("grundskola", "bup")
    everyone = protect(flow_table(data), rules=EXACT)
    all_but_one = protect(flow_table(data, keep=lambda r: r.municipality != "lekeberg"), rules=EXACT)
    lekeberg = protect(flow_table(data, keep=lambda r: r.municipality == "lekeberg"), rules=EXACT)
    assert lekeberg[cell].suppressed
    assert everyone[cell].value is not None and all_but_one[cell].value is not None
    assert everyone[cell].value - all_but_one[cell].value == 1
    noisy = [
        protect(flow_table(data, keep=keep))[cell].value
        for keep in (lambda r: True, lambda r: r.municipality != "lekeberg")
    ]
    assert noisy[0] is not None and noisy[1] is not None
    # With noise the difference is Lekeberg's base cell adjusted: 1 plus an adjustment of -1, 0 or +1.
    assert noisy[0] - noisy[1] == 1 + adjusted_cells(data, [data.referrals[-1]])[1]


# ----------------------------------------------------------------------------------- properties


@PROPERTY
@given(tables(), rules_strategy)
def test_nothing_resting_on_fewer_than_k_children_is_published(
    drawn: tuple[Table, Measure], rules: DisclosureRules
) -> None:
    table, _ = drawn
    answer = protect(table, rules=rules)
    seen = adjusted_table(table) if rules.noise else table  # what the threshold counts
    for key, shown in answer.items():
        if 0 < seen.counts[key].children < rules.k:
            assert shown.value is None
            assert answer.suppression_log[key] == "primary"
        for name, value in shown.statistics.items():
            if value is not None:
                assert not shown.suppressed and seen.counts[key].statistics[name].children >= rules.k


@PROPERTY
@given(tables(), st.integers(3, 7))
def test_published_counts_are_exact_or_adjusted_and_noise_decides_on_the_adjusted_table(
    drawn: tuple[Table, Measure], k: int
) -> None:
    table, _ = drawn
    exact = protect(table, rules=DisclosureRules(k=k, noise=False))
    for key, shown in exact.items():
        assert shown.value in (None, table.counts[key].value)
    noisy = protect(table, rules=DisclosureRules(k=k))
    # Every decision and every value is the adjusted table's: nothing else about the truth shows. (When
    # the adjusted numbers are themselves a valid table: the noise may break a total of distinct children.)
    try:
        as_adjusted = protect(adjusted_table(table), rules=DisclosureRules(k=k, noise=False))
    except InvalidInput:
        as_adjusted = noisy
    assert dict(noisy.items()) == dict(as_adjusted.items())
    assert noisy.suppression_log == as_adjusted.suppression_log
    for key, shown in noisy.items():
        true = table.counts[key]
        if shown.value is not None:
            assert shown.value == (0 if true.value == 0 else true.value + (true.noise or 0))
            assert shown.value == 0 or shown.value >= k


@PROPERTY
@given(tables(), rules_strategy, st.randoms(use_true_random=False))
def test_the_answer_is_deterministic_and_independent_of_key_order(
    drawn: tuple[Table, Measure], rules: DisclosureRules, rnd: random.Random
) -> None:
    table, _ = drawn
    first = protect(table, rules=rules)
    assert protect(table, rules=rules) == first
    keys = list(table.counts)
    rnd.shuffle(keys)
    sums = [Sum(s.total, tuple(rnd.sample(s.parts, len(s.parts)))) for s in table.sums]
    rnd.shuffle(sums)
    shuffled = protect(Table({key: table.counts[key] for key in keys}, tuple(sums)), rules=rules)
    assert dict(shuffled.items()) == dict(first.items())
    assert dict(shuffled.suppression_log) == dict(first.suppression_log)


@PROPERTY
@given(tables() | cross_tables(), st.integers(3, 7))
def test_every_sum_hides_none_or_at_least_two_and_hidden_parts_of_a_shown_total_are_not_small(
    drawn: tuple[Table, Measure], k: int
) -> None:
    table, _ = drawn
    answer = protect(table, rules=DisclosureRules(k=k, noise=False))
    for s in table.sums:
        hidden = [key for key in (s.total, *s.parts) if answer[key].suppressed]
        assert len(hidden) != 1
        if hidden and not answer[s.total].suppressed:
            # The total minus the shown parts is the hidden parts' sum: it must rest on >= k children.
            shown_children = sum(table.counts[p].children for p in s.parts if not answer[p].suppressed)
            hidden_children = [table.counts[p].children for p in hidden]
            assert max(table.counts[s.total].children - shown_children, *hidden_children) >= k


@settings(PROPERTY, max_examples=120)
@given(tables(max_children=18) | cross_tables(max_side=4), st.integers(3, 6))
def test_margin_attack_cannot_pin_any_hidden_small_count(drawn: tuple[Table, Measure], k: int) -> None:
    table, measure = drawn
    if measure == "children" and table.sums:
        # Distinct-children totals are not sums of their parts; the attacker's equations would be false.
        return
    answer = protect(table, rules=DisclosureRules(k=k, noise=False))
    for key, reason in answer.suppression_log.items():
        if reason == "primary":
            assert not pins(table, answer, key), f"{key} can be recovered from the totals"


@PROPERTY
@given(tables(max_children=40) | cross_tables(), st.integers(3, 7))
def test_no_combination_of_totals_isolates_a_hidden_small_count(drawn: tuple[Table, Measure], k: int) -> None:
    table, _ = drawn
    answer = protect(table, rules=DisclosureRules(k=k, noise=False))
    primary = {key for key, reason in answer.suppression_log.items() if reason == "primary"}
    assert not primary & linearly_determined(table, answer)


def matches(key: Key, r: Referral) -> bool:
    sender, receiver = key
    return sender in (TOTAL, r.sender) and receiver in (TOTAL, r.receiver)


@PROPERTY
@given(datasets(), st.integers(3, 6), st.sampled_from(MUNICIPALITIES), st.randoms(use_true_random=False))
def test_every_pair_of_queries_differing_by_one_municipality_gives_the_same_difference(
    data: Data, k: int, left_out: str, rnd: random.Random
) -> None:
    """The averaging attack: many pairs of overlapping queries, each a random set of other
    municipalities with and without ``left_out``. Every pair that shows a key shows the same difference,
    ``left_out``'s adjusted base cells under it: there is nothing to average."""
    rules = DisclosureRules(k=k)
    others = [m for m in MUNICIPALITIES if m != left_out]
    differences: dict[Key, set[int]] = {}
    for _ in range(6):
        chosen = set(rnd.sample(others, rnd.randint(1, len(others))))
        without = protect(flow_table(data, keep=lambda r, c=chosen: r.municipality in c), rules=rules)  # type: ignore[misc]
        both = chosen | {left_out}
        with_it = protect(flow_table(data, keep=lambda r, c=both: r.municipality in c), rules=rules)  # type: ignore[misc]
        for key, shown in with_it.items():
            before = without[key].value if key in without.cells or key in without.totals else 0
            if shown.value is not None and before is not None:
                differences.setdefault(key, set()).add(shown.value - before)
    for key, seen in differences.items():
        part = [r for r in data.referrals if r.municipality == left_out and matches(key, r)]
        assert seen == {len(part) + adjusted_cells(data, part)[1]}, key
