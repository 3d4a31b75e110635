"""flow_rollup_month: the lead-time rollups again by month, without the sender's and recipient's
municipality

A coordinator's usual lead-time question covers a year of the whole county. Read from ``flow_rollup``
(one row per ISO week and cell) that is about 30,000 rows and 300,000 histogram elements per lead
measure at 1,000,000 referrals; this table holds the same measures summed per month (the month a week's
Thursday is in) and per municipality, sender type, recipient type, kind and Trappan step: a quarter of
the rows and under half the elements. ``hub.db.flows`` reads whole months from it and the weeks at
either end of a period, and any grouping it cannot answer (weeks, the sender's or recipient's
municipality), from ``flow_rollup``.

A row is the sum of its ``flow_rollup`` rows: ``value``, ``cell_key`` (mod 2^32) and the histogram, and
``children`` as the sum of their distinct children (a child in two weeks counts twice; readers use it
only as a sum, never as a row's distinct children). ``flow_apply`` adds each lead change to both tables
in the same transaction; ``flow_rebuild`` and ``flow_rebuild_bulk`` empty and refill it.

The same revision makes sending cheaper for the rollups (a fifth less time in the trigger):
``flow_enter`` writes a new referral's ``sent`` rows in one statement of its own instead of through
``flow_apply``, skips the check for the child's other referrals in the cell when the child has none at
all, and updates ``flow_state.max_child_referrals`` only when the count may exceed it; ``flow_state_row``
builds its HMAC pads only when it creates the row; and the trigger on ``referral_event`` fires only for
status events that move a referral (the others made flow_event return at once, after two calls).

Revision ID: 0007
Revises: 0006
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

KEY = "measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step"
MONTH = "({week} + 3 - extract(day from {week} + 3)::integer + 1)"  # the first day of its Thursday's month

TABLE = f"""
create table flow_rollup_month (
    measure text not null,
    dimension text not null,
    month date not null,
    municipality text not null,
    sender_type text not null,
    recipient_type text not null,
    kind text not null,
    trappan_step smallint not null,
    value integer not null,
    children integer not null,
    cell_key bigint not null,
    hist bigint[],
    primary key ({KEY})
) with (fillfactor = 80)
"""

# Every row again from flow_rollup: sums, and each histogram's elements summed by bucket.
FILL = f"""
create function flow_month_fill() returns void language sql as $$
    insert into flow_rollup_month ({KEY}, value, children, cell_key, hist)
    select s.measure, s.dimension, s.month, s.municipality, s.sender_type, s.recipient_type, s.kind,
           s.trappan_step, s.value, s.children, s.cell_key, h.hist
    from (
        select measure, dimension, {MONTH.format(week="week")} as month, municipality, sender_type,
               recipient_type, kind, trappan_step, sum(value)::integer as value, sum(children)::integer as children,
               sum(cell_key) % 4294967296 as cell_key
        from flow_rollup where starts_with(measure, 'lead:')
        group by 1, 2, 3, 4, 5, 6, 7, 8
    ) as s
    left join (
        select {KEY}, array_agg((bucket << 32) | n order by bucket) as hist
        from (
            select measure, dimension, {MONTH.format(week="week")} as month, municipality, sender_type,
                   recipient_type, kind, trappan_step, e >> 32 as bucket, sum(e & 4294967295)::bigint as n
            from flow_rollup cross join unnest(hist) as e
            where starts_with(measure, 'lead:')
            group by 1, 2, 3, 4, 5, 6, 7, 8, 9
        ) as per_bucket
        group by 1, 2, 3, 4, 5, 6, 7, 8
    ) as h using (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step)
$$
"""

# The rows of one flow_apply call (its measures x the referral's dimensions), whether the child is
# counted already in the row through another referral in the cell, and its histogram element.
CHANGES = """
    select c.measure, d.dimension, c.delta,
           case when c.secs is null then null else array[(flow_bucket(c.secs)::bigint << 32) | 1] end as hist,
           cardinality(others) > 0 and exists (
               select 1 from unnest(others) as o
               where d.dimension = any(o.dimensions) and flow_in(o, c.measure)
           ) as shared
    from unnest(measures, deltas, seconds) as c(measure, delta, secs),
         unnest(r.dimensions) as d(dimension)
"""

# Appended to 0006's flow_apply: lead changes go to flow_rollup_month too, after flow_rollup and in key order
# (two transactions writing the same rows never wait for each other in a cycle).
APPLY_MONTH = rf"""
    if not exists (select 1 from unnest(measures) as m where starts_with(m, 'lead:')) then
        return;
    end if;
    insert into flow_rollup_month as f ({KEY}, value, children, cell_key, hist)
    select x.measure, x.dimension, {MONTH.format(week="r.week")}, r.municipality, r.sender_type,
           r.recipient_type, r.kind, r.trappan_step, x.delta,
           case when x.shared then 0 else x.delta end,
           case when x.shared then 0 else (x.delta * r.child_key + 4294967296) % 4294967296 end,
           x.hist
    from ({CHANGES}) as x
    where starts_with(x.measure, 'lead:')
    order by x.measure, x.dimension
    on conflict ({KEY}) do update
        set value = f.value + excluded.value,
            children = f.children + excluded.children,
            cell_key = (f.cell_key + excluded.cell_key) % 4294967296,
            hist = case when excluded.hist is null then f.hist else flow_hist_add(f.hist, excluded.hist) end;
end $$"""
APPLY_END = "\nend $$;"


# A new referral's ``sent`` rows, written by flow_enter itself instead of through flow_apply: one statement
# instead of four (the check for the child's other referrals in the cell, the lock on the child, which
# flow_enter holds already, reading them, the upsert), and no check at all for a child's first referral.
# The same rows as flow_apply writes (``sent`` is every referral: flow_in is true for each other one).
ENTER_SENT_BEFORE = """    if n > 1 then
        update flow_state set max_child_referrals = n where id = 1 and max_child_referrals < n;
    end if;
    if r.status = 'requested' then
        perform flow_apply(r, array['sent'], array[1], array[null]::float8[]);
    else"""
ENTER_SENT_AFTER = """    if n > s.max_child_referrals then  -- s was read first: the stored maximum is at least that
        update flow_state set max_child_referrals = n where id = 1 and max_child_referrals < n;
    end if;
    if r.status = 'requested' then
        insert into flow_rollup as f (measure, dimension, week, cell, municipality, sender_municipality,
            sender_type, recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key)
        select 'sent', d.dimension, r.week, r.cell, r.municipality, r.sender_municipality, r.sender_type,
               r.recipient_municipality, r.recipient_type, r.kind, r.trappan_step, 1,
               case when x.shared then 0 else 1 end, case when x.shared then 0 else r.child_key end
        from unnest(r.dimensions) as d(dimension)
        cross join lateral (
            select n > 1 and exists (
                select 1 from flow_referral o
                where o.child_key = r.child_key and o.cell = r.cell and o.referral_id <> r.referral_id
                  and d.dimension = any(o.dimensions)
            ) as shared
        ) as x
        order by d.dimension
        on conflict (measure, dimension, week, cell) do update
            set value = f.value + excluded.value,
                children = f.children + excluded.children,
                cell_key = (f.cell_key + excluded.cell_key) % 4294967296;
    else"""
# flow_state_row makes its pads only when it makes the row (it ran on every referral).
STATE_BEFORE = """    ipad bytea := decode(repeat('36', 64), 'hex');
    opad bytea := decode(repeat('5c', 64), 'hex');
begin
    select * into s from flow_state where id = 1;
    if found then
        return s;
    end if;
"""
STATE_AFTER = """    ipad bytea;
    opad bytea;
begin
    select * into s from flow_state where id = 1;
    if found then
        return s;
    end if;
    ipad := decode(repeat('36', 64), 'hex');
    opad := decode(repeat('5c', 64), 'hex');
"""


# Status events that move nothing (a referral's first event, notes) no longer call a function at all:
# the trigger's condition is the one flow_event returns early on.
EVENT_TRIGGER = """
create trigger flow_referral_event after insert on referral_event for each row
when (new.type = 'status' and new.from_status is not null and new.to_status is not null)
execute function flow_on_referral_event()
"""
EVENT_TRIGGER_0005 = """
create trigger flow_referral_event after insert on referral_event
for each row execute function flow_on_referral_event()
"""


def _applying(month: bool) -> str:
    """0006's flow_apply, writing lead changes to flow_rollup_month too when ``month``."""
    lookup = _migration("flows_0006", "0006_flow_rebuild_bulk.py").LOOKUP
    (apply,) = [s.strip() for s in lookup if s.strip().startswith("create or replace function flow_apply(")]
    assert apply.endswith(APPLY_END)
    return apply[: -len(APPLY_END)] + APPLY_MONTH if month else apply


def _entering(faster: bool) -> list[str]:
    """flow_enter (0006) and flow_state_row (0005), with the changes above when ``faster``."""
    flows_0005 = _migration("flows_0005", "0005_flows.py")
    (state,) = [
        s for s in flows_0005._statements(flows_0005.FUNCTIONS) if s.startswith("create function flow_state_row(")
    ]
    lookup = _migration("flows_0006", "0006_flow_rebuild_bulk.py").LOOKUP
    (enter,) = [s.strip() for s in lookup if s.strip().startswith("create or replace function flow_enter(")]
    assert ENTER_SENT_BEFORE in enter and STATE_BEFORE in state
    if faster:
        enter = enter.replace(ENTER_SENT_BEFORE, ENTER_SENT_AFTER)
        state = state.replace(STATE_BEFORE, STATE_AFTER)
    return [enter, state.replace("create function", "create or replace function", 1)]


REBUILD_TRUNCATE = "truncate flow_referral, flow_rollup, flow_child, flow_suggestion;"
REBUILD_BULK_END = "analyze flow_rollup;\nend $$"


def _migration(name: str, file: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rebuilds(month: bool) -> list[str]:
    """flow_rebuild (0005) and flow_rebuild_bulk (0006), emptying (and the bulk one refilling)
    flow_rollup_month when ``month``, as they were otherwise."""
    flows_0005 = _migration("flows_0005", "0005_flows.py")
    flows_0006 = _migration("flows_0006", "0006_flow_rebuild_bulk.py")
    (rebuild,) = [
        s for s in flows_0005._statements(flows_0005.FUNCTIONS) if s.startswith("create function flow_rebuild(")
    ]
    bulk = flows_0006.FUNCTION.strip()
    assert REBUILD_TRUNCATE in rebuild and REBUILD_TRUNCATE in bulk and bulk.endswith(REBUILD_BULK_END)
    if month:
        truncate = REBUILD_TRUNCATE.replace(";", ", flow_rollup_month;")
        rebuild = rebuild.replace(REBUILD_TRUNCATE, truncate)
        bulk = bulk.replace(REBUILD_TRUNCATE, truncate).replace(
            REBUILD_BULK_END,
            "perform flow_month_fill();\n    analyze flow_rollup;\n    analyze flow_rollup_month;\nend $$",
        )
    return [s.replace("create function", "create or replace function", 1) for s in (rebuild, bulk)]


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(FILL)
    op.execute(_applying(month=True))
    for statement in [*_entering(faster=True), *_rebuilds(month=True)]:
        op.execute(statement)
    op.execute("drop trigger flow_referral_event on referral_event")
    op.execute(EVENT_TRIGGER)
    op.execute("select flow_month_fill()")
    op.execute("analyze flow_rollup_month")


def downgrade() -> None:
    op.execute(_applying(month=False))
    for statement in [*_entering(faster=False), *_rebuilds(month=False)]:
        op.execute(statement)
    op.execute("drop trigger flow_referral_event on referral_event")
    op.execute(EVENT_TRIGGER_0005)
    op.execute("drop function flow_month_fill()")
    op.execute("drop table flow_rollup_month")
