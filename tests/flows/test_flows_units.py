"""The parts of the flow queries that need no database: weeks, quantiles, settings."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from hub.config import Settings
from hub.db.flows import Stalled, summed_days
from hub.domain.errors import InvalidInput
from hub.services.flows import bucket_bounds, quantiles, weeks
from tests.flows.workload import bucket

TODAY = date(2026, 3, 18)  # a Wednesday


@pytest.mark.parametrize(
    ("date_from", "date_to", "finest", "expected"),
    [
        (None, None, "week", (date(2025, 3, 24), date(2026, 3, 16))),  # 52 weeks up to this one
        (date(2026, 1, 1), date(2026, 1, 31), "week", (date(2025, 12, 29), date(2026, 1, 26))),
        # Months: the weeks whose Thursday is in them. 2026-01-01 is a Thursday, 2026-01-29 the last one.
        (date(2026, 1, 20), date(2026, 1, 20), "month", (date(2025, 12, 29), date(2026, 1, 26))),
        # February 2026: Thursdays 5th to 26th.
        (date(2026, 2, 10), date(2026, 2, 11), "month", (date(2026, 2, 2), date(2026, 2, 23))),
        (date(2026, 2, 10), date(2026, 5, 11), "quarter", (date(2025, 12, 29), date(2026, 6, 22))),
        (date(2025, 7, 1), date(2025, 7, 1), "year", (date(2024, 12, 30), date(2025, 12, 22))),
    ],
)
def test_dates_widen_to_whole_weeks_of_whole_periods(date_from, date_to, finest, expected) -> None:  # type: ignore[no-untyped-def]
    assert weeks(date_from, date_to, today=TODAY, finest=finest) == expected


def test_a_period_runs_forwards_and_is_bounded() -> None:
    with pytest.raises(InvalidInput):
        weeks(date(2026, 2, 1), date(2026, 1, 1), today=TODAY, finest="week")
    with pytest.raises(InvalidInput):
        weeks(date(2000, 1, 1), date(2026, 1, 1), today=TODAY, finest="week")


def test_quantiles_from_a_histogram_fall_in_the_right_bucket() -> None:
    seconds = [30, 90, 600, 3600, 7200, 86_400, 3 * 86_400, 10 * 86_400, 30 * 86_400, 90 * 86_400]
    histogram: dict[int, int] = {}
    for s in seconds:
        histogram[bucket(s)] = histogram.get(bucket(s), 0) + 1
    found = quantiles(histogram, (0.0, 0.5, 0.9, 1.0))
    for value, truth in zip(found, (30, 7200, 30 * 86_400, 90 * 86_400), strict=True):
        low, high = bucket_bounds(bucket(truth))
        assert low <= value <= high * (1 + 1e-9)
    for value, truth in zip(found[1:3], (7200, 30 * 86_400), strict=True):
        assert abs(value / truth - 1) < 0.19, "within a bucket's width"
    assert found[1:3] == [quantiles(histogram, (q,))[0] for q in (0.5, 0.9)], "one pass gives each alone"
    assert quantiles({0: 3}, (0.5,)) == [pytest.approx(30)]
    assert quantiles({83: 1, 5: 0}, (0.5,)) == [bucket_bounds(83)[0]]
    assert quantiles({}, (0.5, 0.9)) == [0.0, 0.0]


def test_the_threshold_is_never_below_three() -> None:
    assert Settings(disclosure_k=3).disclosure_k == 3
    with pytest.raises(ValidationError):
        Settings(disclosure_k=2)
    assert Settings().stall_days == 30 and Settings().flows_finest_period == "week"


def test_a_stalls_median_is_percentile_conts_over_every_referral() -> None:
    # (days waited, referrals, children, noise) per day, as PostgreSQL's percentile_cont(0.5) would read
    # the referrals one by one: the middle value, or the mean of the two middle ones.
    assert summed_days([(20, 1, 1, 0), (10, 1, 1, 1)]) == Stalled(2, 2, 1, 15.0)
    assert summed_days([(5, 3, 2, -1)]).median_days == 5
    assert summed_days([(9, 1, 1, 0), (1, 1, 1, 0), (2, 2, 2, 0)]).median_days == 2
    assert summed_days([(1, 2, 2, 0), (3, 2, 2, 0)]).median_days == 2
