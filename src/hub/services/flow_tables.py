"""Building the disclosure table of a grouped query, reading the protected answer back as rows, and the
lead-time histograms' quantiles."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from hub.db import flows as db
from hub.domain.disclosure import TOTAL, Count, ProtectedTable, Published, Statistic, Table, rate
from hub.services.flow_model import FlowRow


def disclosure_table(
    aggs: Mapping[db.Key, db.Aggregate],
    groups: Sequence[str],
    statistics: Callable[[db.Key], Mapping[str, Statistic]] | None = None,
) -> Table:
    """The disclosure table of a grouped query: one-way with its total, or two-way with every total."""

    def count(key: db.Key) -> Count:
        agg = aggs.get(key)
        if agg is None or agg.value == 0:
            return Count(0, 0)
        return Count(agg.value, agg.children, agg.noise, statistics(key) if statistics else {})

    if len(groups) == 1:
        cells = {key[0]: count(key) for key in aggs if key[0] != TOTAL}
        return Table.one_way(cells, total=count((TOTAL,)))
    pairs = {(key[0], key[1]): count(key) for key in aggs if TOTAL not in key}
    return Table.two_way(
        pairs,
        rows={key[0]: count(key) for key in aggs if key[0] != TOTAL and key[1] == TOTAL},
        columns={key[1]: count(key) for key in aggs if key[0] == TOTAL and key[1] != TOTAL},
        total=count((TOTAL, TOTAL)),
    )


def flow_rows(
    groups: Sequence[str],
    protected: ProtectedTable,
    values: Callable[[db.Key, Published], dict[str, float | None]],
) -> tuple[FlowRow, ...]:
    rows = [FlowRow(tuple(zip(groups, key, strict=True)), values(key, p)) for key, p in protected.items()]
    return sorted_rows(rows)


def sorted_rows(rows: Sequence[FlowRow]) -> tuple[FlowRow, ...]:
    """Cells first, then totals; each in the order of their group values (``*`` after the values)."""
    return tuple(sorted(rows, key=lambda r: (r.total, [(v == TOTAL, v) for _, v in r.key])))


def published_or(table: ProtectedTable, key: db.Key, default: Published) -> Published:
    try:
        return table[key]
    except KeyError:
        return default


def rounded_rate(numerator: Published, denominator: Published) -> float | None:
    share = rate(numerator, denominator)
    return None if share is None else round(share, 3)


# Lead-time histogram buckets, as the database fills them (flow_bucket in migration 0005): bucket 0 is
# under a minute; bucket i >= 1 holds [60 * 2^((i-1)/4), 60 * 2^(i/4)) seconds; the last is open-ended.
LAST_BUCKET = 83


def bucket_bounds(bucket: int) -> tuple[float, float]:
    if bucket == 0:
        return 0.0, 60.0
    low = 60.0 * 2 ** ((bucket - 1) / 4)
    return low, math.inf if bucket >= LAST_BUCKET else 60.0 * 2 ** (bucket / 4)


def quantiles(histogram: Mapping[int, int], qs: Sequence[float]) -> list[float]:
    """The quantiles ``qs`` (ascending) in seconds from a merged histogram, in one pass: for each, the
    bucket holding rank ``q * n``, and within it geometric interpolation (linear in the first bucket; the
    open last bucket gives its lower edge). Within a bucket the true value is at most a factor 2^(1/4)
    (19 %) away."""
    buckets = sorted(item for item in histogram.items() if item[1])
    if not buckets:
        return [0.0] * len(qs)
    n = sum(count for _, count in buckets)
    found: list[float] = []
    seen = 0
    at = 0
    for q in qs:
        rank = q * n
        while at < len(buckets) - 1 and seen + buckets[at][1] < rank:
            seen += buckets[at][1]
            at += 1
        bucket, count = buckets[at]
        share = min(1.0, (rank - seen) / count)
        low, high = bucket_bounds(bucket)
        if bucket == 0:
            found.append(low + (high - low) * share)
        elif math.isinf(high):
            found.append(low)
        else:
            found.append(float(low * (high / low) ** share))
    return found


def in_days(seconds: float) -> float:
    return round(seconds / 86400, 2)
