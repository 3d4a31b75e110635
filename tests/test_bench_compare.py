"""``python -m bench compare`` reads the figures ``bench referrals`` prints: its reader against the real
report functions, so that a change to what the benchmark prints cannot leave the comparison reading nothing
or the wrong numbers."""

from __future__ import annotations

from typing import Any

import pytest
from bench.compare import Window, report, windows
from bench.load import LoadResult
from bench.referrals import report as print_report
from bench.server import CpuMeter


def _printed(capsys: pytest.CaptureFixture[str], clients: int, completed: int, server_s: float, pg_s: float) -> str:
    result = LoadResult(
        concurrency=clients,
        seconds=10.0,
        completed=completed,
        errors=0,
        latencies=[0.010] * 98 + [0.030, 0.040],
        generator_cpu_seconds=0.5,
        reconnects=2,
    )
    meter = CpuMeter(hub=None)  # type: ignore[arg-type]  # readings set by hand: no hub to read
    meter.readings = {"start": (100.0, 50.0, 1000.0), "end": (100.0 + server_s, 50.0 + pg_s, 1019.0)}
    print_report(result, meter, 10.0)
    return str(capsys.readouterr().out)


def test_each_window_is_read_with_its_own_cpu_figures(capsys: Any) -> None:
    output = _printed(capsys, 8, 5_000, 10.0, 6.5) + "unrelated line\n" + _printed(capsys, 32, 6_000, 12.0, 7.2)
    assert windows(output) == [
        Window(clients=8, throughput=500.0, p99_ms=40.0, server_ms=2.0, postgres_ms=1.3, other_cores=0.2),
        Window(clients=32, throughput=600.0, p99_ms=40.0, server_ms=2.0, postgres_ms=1.2, other_cores=0.0),
    ]


def test_the_pairs_ratios_are_after_over_before_with_their_median_and_range() -> None:
    def w(rate: float, server: float) -> list[Window]:
        return [Window(8, rate, 20.0, server, 1.0, 0.0)]

    lines = report([(w(600, 1.8), w(500, 2.0)), (w(400, 2.2), w(500, 2.0)), (w(550, 1.9), w(500, 2.0))])
    assert lines[1] == (
        "  8 clients: req/s 1.10 (0.80–1.20), p99 1.00 (1.00–1.00), server CPU 0.95 (0.90–1.10), "
        "postgres CPU 1.00 (1.00–1.00)"
    )
