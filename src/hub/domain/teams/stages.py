"""When a life stage is expected to end, from the stage vocabulary and the child's year of birth only.

Swedish schooling goes by the calendar year of birth (förskoleklass from the autumn term of the year a child
turns 6, compulsory school until the spring of the year it turns 16), so the year alone dates a stage's end
for a whole cohort. The hub keeps only the resulting date on the named person's assignment: never the birth
date, and no date finer than a cohort's (every child born that year has the same one)."""

from __future__ import annotations

import calendar
from datetime import date

from hub.domain.vocabulary import StageEnd


def expected_end(end: StageEnd | None, birth_year: int) -> date | None:
    """The day the stage is expected to end for a child born in ``birth_year`` (None: the stage has no end
    in the vocabulary's version)."""
    if end is None:
        return None
    year = birth_year + end.turns
    return date(year, end.month, min(end.day, calendar.monthrange(year, end.month)[1]))
