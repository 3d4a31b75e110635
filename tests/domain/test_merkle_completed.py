"""Which perfect nodes a stretch of leaves completes (``completed_by``): what ``hub audit verify`` asks the
database for, stretch by stretch, must be exactly what appending those leaves makes."""

from __future__ import annotations

import pytest

from hub.domain.merkle import Frontier, completed_by


def _appended(lo: int, hi: int) -> list[tuple[int, int]]:
    tree = Frontier()
    made: list[tuple[int, int]] = []
    for position in range(hi):
        completed = tree.append(position.to_bytes(32, "big"))
        if position >= lo:
            made += [node for node, _ in completed]
    return made


@pytest.mark.parametrize(
    ("lo", "hi"), [(0, 0), (0, 1), (0, 2), (0, 5), (3, 4), (1, 8), (5, 13), (7, 64), (50, 100), (64, 65), (0, 257)]
)
def test_the_nodes_a_stretch_completes_are_those_appending_it_makes(lo: int, hi: int) -> None:
    expected = sorted(_appended(lo, hi))
    ranges = completed_by(lo, hi)
    assert [(level, index) for level, first, last in ranges for index in range(first, last + 1)] == expected
    assert [level for level, _, _ in ranges] == list(range(1, len(ranges) + 1))  # no level skipped
