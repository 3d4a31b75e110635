"""The request of a flow query checked: who asks, which groupings and measures, which filter values,
which weeks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from hub.db import flows as db
from hub.domain.errors import FieldError, InvalidInput, NotPermitted
from hub.domain.principal import Role
from hub.services.codes import unknown_codes
from hub.services.context import Actor
from hub.services.flow_model import MAX_WEEKS, MEASURES, PERIODS, Context, FlowFilter


def invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}.", errors=[FieldError(name, message)])


def authorise(actor: Actor) -> None:
    """Coordinators only: everyone else gets a 403, whatever they ask."""
    if not actor.principal.has_any(Role.COORDINATOR):
        raise NotPermitted("Referral flows are for the role coordinator.")


def checked_groups(ctx: Context, by: Sequence[str], allowed: frozenset[str]) -> tuple[str, ...]:
    authorise(ctx.actor)
    groups = tuple(by)
    if not 1 <= len(groups) <= 2 or len(set(groups)) != len(groups):
        raise invalid("by", "one or two different groupings")
    unknown = [g for g in groups if g not in allowed]
    if unknown:
        raise InvalidInput(
            f"Unknown grouping {unknown[0]!r}; use one of {', '.join(sorted(allowed))}.",
            errors=[FieldError("by", f"one of {', '.join(sorted(allowed))}", "unknown-grouping")],
        )
    periods = [g for g in groups if g in PERIODS]
    if len(periods) > 1:
        raise invalid("by", "at most one period")
    for period in periods:
        ctx.rules.check_period(period)
    return groups


def family_measures(ctx: Context, groups: Sequence[str]) -> list[str]:
    """The measures of a grouping that is a family of them: every status, every rejection reason."""
    if "status" in groups:
        return [f"status:{code}" for code in sorted(ctx.vocabulary.codes("referral-statuses"))]
    if "reason" in groups:
        return [f"rejected:{code}" for code in sorted(ctx.vocabulary.codes("rejection-reasons"))] + [
            "rejected:unspecified"
        ]
    return []


def rollup_measure(measure: str) -> str:
    if measure not in MEASURES:
        raise invalid("measure", f"one of {', '.join(MEASURES)}")
    return MEASURES[measure]


def parse_steps(steps: Sequence[str], name: str) -> tuple[int, ...]:
    values = {"none": -1, "0": 0, "1": 1, "2": 2, "3": 3}
    bad = [s for s in steps if s not in values]
    if bad:
        raise invalid(name, "0, 1, 2, 3 or none")
    return tuple(values[s] for s in steps)


def scope_of(ctx: Context, flt: FlowFilter) -> db.Scope:
    """Check the filter against the vocabulary and turn its dates into the weeks it covers."""
    errors: list[FieldError] = []
    vocabulary = ctx.vocabulary
    errors += unknown_codes(vocabulary, "organisation-type", flt.sender_types, "sender_type")
    errors += unknown_codes(vocabulary, "organisation-type", flt.recipient_types, "recipient_type")
    errors += unknown_codes(vocabulary, "referral-kind", flt.kinds, "kind")
    if flt.dimension is not None:
        errors += unknown_codes(vocabulary, "wellbeing-indicator", [flt.dimension], "dimension")
    errors += [
        FieldError(f"municipality/{i}", "an SCB municipality code (4 digits) or county", "invalid")
        for i, m in enumerate(flt.municipalities)
        if not (m == "county" or (len(m) == 4 and m.isdigit()))
    ]
    if errors:
        raise InvalidInput(f"{len(errors)} filter value(s) are not valid.", errors=errors)
    week_from, week_to = weeks(flt.date_from, flt.date_to, today=ctx.actor.today, finest=ctx.rules.finest_period)
    return db.Scope(
        week_from=week_from,
        week_to=week_to,
        municipalities=flt.municipalities,
        sender_types=flt.sender_types,
        recipient_types=flt.recipient_types,
        kinds=flt.kinds,
        steps=parse_steps(flt.steps, "step"),
        dimension=flt.dimension,
    )


def _unit(day: date, period: str) -> tuple[date, date]:
    """The first and last day of the week, month, quarter or year ``day`` is in."""
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=6)
    if period == "month":
        start = day.replace(day=1)
    elif period == "quarter":
        start = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    else:
        start = day.replace(month=1, day=1)
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    end_month = start.month - 1 + months
    end = date(start.year + end_month // 12, end_month % 12 + 1, 1) - timedelta(days=1)
    return start, end


def weeks(date_from: date | None, date_to: date | None, *, today: date, finest: str) -> tuple[date, date]:
    """The Mondays of the first and last ISO week a query covers: the dates widened to whole periods of
    the finest kind allowed, a week belonging to the period its Thursday is in. Defaults: the 52 weeks up
    to and including ``today``'s."""
    date_to = date_to or today
    date_from = date_from or date_to - timedelta(weeks=51)
    if date_from > date_to:
        raise invalid("from", "on or before to")
    if finest == "day":
        finest = "week"
    first_day, _ = _unit(date_from, finest)
    _, last_day = _unit(date_to, finest)
    first_thursday = first_day + timedelta(days=(3 - first_day.weekday()) % 7)
    last_thursday = last_day - timedelta(days=(last_day.weekday() - 3) % 7)
    week_from, week_to = first_thursday - timedelta(days=3), last_thursday - timedelta(days=3)
    if (week_to - week_from).days // 7 + 1 > MAX_WEEKS:
        raise invalid("from", f"a query covers at most {MAX_WEEKS} weeks")
    return week_from, week_to
