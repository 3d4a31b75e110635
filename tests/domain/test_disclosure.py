"""Disclosure control for coordinators' aggregates (``hub.domain.disclosure``).

The property tests play the attacker against tables built the way the query layer will build them (from
referral records: counts, distinct children, cell keys from record keys):

- nothing resting on fewer than k children is ever published, counts or statistics;
- published counts are the true ones (noise off) or within ±3 of them and never below k (noise on);
- the answer is deterministic and does not depend on the order of the keys or sums;
- every sum has no hidden key or at least two, and hidden parts of a published total rest on >= k children;
- (i) margins: with exact published values (noise off, the strongest case), an attacker who knows every
  published number and every sum cannot pin any primary-hidden key: a brute-force integer search finds a
  second solution for it, and no linear combination of the sums isolates it;
- (ii) differencing: two queries that differ by one municipality (all vs all but one), computed through
  ``protect`` as the query layer would, never give the removed municipality's small count exactly to an
  attacker who knows only what the two answers say; one who also knows it is non-zero can pin it only in
  the rare case the module docstring describes (an adjustment at the end of its range).
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
    combine_record_keys,
    perturb,
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
MAX_NOISE = max(NOISE_TABLE)

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


def count_of(data: Data, referrals: Iterable[Referral], measure: Measure = "referrals") -> Count:
    rows = list(referrals)
    children = {r.child for r in rows}
    timed = [r for r in rows if r.lead_time is not None]
    stats = {}
    if timed:
        lead_times = [r.lead_time for r in timed if r.lead_time is not None]
        stats["lead_time_median_days"] = Statistic(float(median(lead_times)), len({r.child for r in timed}))
    return Count(
        value=len(rows) if measure == "referrals" else len(children),
        children=len(children),
        cell_key=combine_record_keys(record_key(data.secret, f"child-{c}") for c in children),
        statistics=stats,
    )


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
                cells[(f"r{i}", f"c{j}")] = Count(children + extra, children, draw(st.integers(0, 2**32 - 1)))

    def total(keys: list[tuple[str, str]]) -> Count:
        return Count(sum(cells[k].value for k in keys), sum(cells[k].children for k in keys), 1)

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


def could_have_been(published: int, k: int) -> set[int]:
    """True counts that the documented rule (perturb) can publish as ``published``."""
    if published == 0:
        return {0}
    offsets = set(NOISE_TABLE)
    return {
        a
        for a in range(max(k, published - MAX_NOISE), published + MAX_NOISE + 1)
        if any((a + o if a + o >= k else a - o) == published for o in offsets)
    }


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


def count(value: int, children: int | None = None, key: int = 7, **stats: Statistic) -> Count:
    return Count(value, value if children is None else children, key, stats)


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


def test_noise_is_the_same_for_the_same_children_and_count_whatever_the_table() -> None:
    key = combine_record_keys(record_key(b"s", f"child-{i}") for i in range(9))
    alone = protect(Table.one_way({"a": count(9, key=key)}))
    inside = protect(Table.one_way({"b": count(30, key=1), "a": count(9, key=key)}, total=count(39, key=2)))
    assert alone[("a",)].value == inside[("a",)].value == perturb(9, key, k=5)
    assert protect(Table.one_way({"z": Count(0, 0)}))[("z",)].value == 0


def test_the_adjustment_depends_on_who_is_counted_not_only_on_the_count() -> None:
    # Were it a function of the count alone, anyone could invert the public hash.
    published = {perturb(10, record_key(b"s", f"child-{i}"), k=5) for i in range(200)}
    assert published == {10 + offset for offset in set(NOISE_TABLE)}


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
        (Table.one_way({"a": Count(5, 5)}), "counts[('a',)].cell_key"),
        (Table.one_way({"a": count(5), "b": count(6)}, total=count(12)), "sums[('*',)].value"),
        (Table.one_way({"a": count(5), "b": count(6, 5)}, total=count(11, 4)), "sums[('*',)].children"),
        (Table({("a",): count(5)}, (Sum(("t",), (("a",),)),)), "sums[('t',)]"),
        (Table.one_way({"a": count(5, stat=Statistic(1.0, 6))}), "counts[('a',)].statistics.stat"),
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
    assert all(v is not None for v in noisy)


# ----------------------------------------------------------------------------------- properties


@PROPERTY
@given(tables(), rules_strategy)
def test_nothing_resting_on_fewer_than_k_children_is_published(
    drawn: tuple[Table, Measure], rules: DisclosureRules
) -> None:
    table, _ = drawn
    answer = protect(table, rules=rules)
    for key, shown in answer.items():
        true = table.counts[key]
        if 0 < true.children < rules.k:
            assert shown.value is None
            assert answer.suppression_log[key] == "primary"
        for name, value in shown.statistics.items():
            if value is not None:
                assert not shown.suppressed and true.statistics[name].children >= rules.k


@PROPERTY
@given(tables(), st.integers(3, 7))
def test_published_counts_are_exact_or_within_the_documented_noise(drawn: tuple[Table, Measure], k: int) -> None:
    table, _ = drawn
    exact = protect(table, rules=DisclosureRules(k=k, noise=False))
    noisy = protect(table, rules=DisclosureRules(k=k))
    assert exact.suppression_log == noisy.suppression_log  # noise never changes what is hidden
    for key, shown in exact.items():
        true = table.counts[key]
        if shown.value is None:
            continue
        assert shown.value == true.value
        published = noisy[key].value
        assert published is not None
        if true.value == 0:
            assert published == 0
        else:
            assert true.cell_key is not None
            assert published == perturb(true.value, true.cell_key, k=k)
            assert abs(published - true.value) <= MAX_NOISE and published >= k


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


def differencing(data: Data, measure: Measure, k: int, left_out: str) -> list[tuple[int, set[int], int, int]]:
    """Query all municipalities and all but ``left_out`` through ``protect``; for every key whose
    left-out part is small (1..k-1 children) and shown in both answers, return the true difference, the
    differences an attacker who knows only the two answers cannot rule out, and both adjustments."""
    rules = DisclosureRules(k=k)
    everyone_table = flow_table(data, measure)
    rest_table = flow_table(data, measure, keep=lambda r: r.municipality != left_out)
    everyone, rest = protect(everyone_table, rules=rules), protect(rest_table, rules=rules)
    found = []
    for key, shown in everyone.items():
        absent = key not in rest_table.counts  # an absent cell is a zero (no referral left)
        a_shown, b_shown = shown.value, 0 if absent else rest[key].value
        if a_shown is None or b_shown is None:
            continue
        part = [r for r in data.referrals if r.municipality == left_out and matches(key, r)]
        children = len({r.child for r in part})
        if not 0 < children < k:
            continue
        a_true, b_true = everyone_table.counts[key].value, 0 if absent else rest_table.counts[key].value
        options = {a - b for a in could_have_been(a_shown, k) for b in could_have_been(b_shown, k) if a >= b}
        found.append((a_true - b_true, options, a_shown - a_true, b_shown - b_true))
    return found


def matches(key: Key, r: Referral) -> bool:
    sender, receiver = key
    return sender in (TOTAL, r.sender) and receiver in (TOTAL, r.receiver)


@PROPERTY
@given(datasets(), st.sampled_from(["referrals", "children"]), st.integers(3, 6), st.sampled_from(MUNICIPALITIES))
def test_two_queries_differing_by_one_municipality_leave_the_small_count_uncertain(
    data: Data, measure: Measure, k: int, left_out: str
) -> None:
    for truth, options, adjust_all, adjust_rest in differencing(data, measure, k, left_out):
        assert truth in options
        assert len(options) >= 2, "the difference of the two answers gives the small count away"
        # An attacker who also knows the count is non-zero (and, for a count of children, below k) is
        # certain only when the two adjustments were at opposite ends of their range (1 in 2,500).
        known = {x for x in options if x >= 1 and (measure == "referrals" or x < k)}
        assert truth in known
        if len(known) == 1:
            assert (adjust_all, adjust_rest, truth) == (-MAX_NOISE, MAX_NOISE, 1) or (
                measure == "children" and (adjust_all, adjust_rest, truth) == (MAX_NOISE, -MAX_NOISE, k - 1)
            )


def test_a_non_zero_small_count_is_rarely_certain_from_two_overlapping_queries() -> None:
    """The residual risk the docs state, measured: over many random county tables and left-out
    municipalities, how often an attacker who knows the count is non-zero is left with one value
    (expected about 1 in 2,500; 0 of about 1,800 with this seed)."""
    rnd = random.Random(20250501)
    attempts = certain = naive_right = 0
    for round_ in range(400):
        home = [rnd.choice(MUNICIPALITIES) for _ in range(rnd.randint(10, 60))]  # a child lives in one
        referrals = [
            Referral(c, municipality, rnd.choice(SENDERS), rnd.choice(RECEIVERS), None)
            for c, municipality in enumerate(home)
            for _ in range(rnd.randint(1, 2))
        ]
        data = Data(tuple(referrals), f"secret-{round_}".encode())
        measure: Measure = rnd.choice(["referrals", "children"])
        for truth, options, adjust_all, adjust_rest in differencing(data, measure, 5, rnd.choice(MUNICIPALITIES)):
            known = {x for x in options if x >= 1 and (measure == "referrals" or x < 5)}
            attempts += 1
            certain += len(known) == 1
            naive_right += adjust_all == adjust_rest  # the plain difference of the two answers is right
            assert truth in known
    assert attempts > 1000
    assert certain / attempts < 0.005, (certain, attempts)
    assert 0.15 < naive_right / attempts < 0.4, (naive_right, attempts)  # about 1 in 4, and never known which
