"""flow_compact(before): the rollup slots of past weeks folded back into one row per cell

Since 0025 a base cell's counters are spread over as many slot rows as transactions wrote it at the same
moment, and a reader sums a range's slots (a hash aggregate over every row read, as much again as reading
them) whenever the range holds any row outside slot 0 (``hub.db.flow_sql.rows_of``). Overlapping writes
are what a busy hour brings, so over the months every long range would come to hold some, and a year's lead
times would take the summing path for good. Weeks that are over get no new referrals (a late event of an
older referral still writes its week), so their slots can be folded into slot 0 once and for all.

``flow_compact(before date)`` does that for every week before ``before`` in ``flow_rollup``, and every
month before ``before``'s month in ``flow_rollup_month``: it deletes the rows in other slots than 0 and
adds each base cell's sums (``value``, ``children``, ``cell_key`` mod 2^32 and the histograms' counts per
bucket: all plain sums, as the readers take them) to its slot-0 row, in one statement per table, and
returns how many rows it removed. Every figure and disclosure adjustment stays what it was. Rows a running
transaction holds are skipped (``skip locked``: they are folded the next time), so the fold never waits for
a writer's slot row and no writer can deadlock with it; a writer that meets a row being folded waits for it
and then writes a new row in its slot, so nothing written concurrently is lost. The only rows the fold
waits for are slot-0 rows, which writers in other slots never hold. The hub's worker runs it in its hourly
housekeeping for the weeks before last week.

Revision ID: 0027
Revises: 0026
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

COMPACT = r"""
create function flow_compact(before date) returns bigint language plpgsql as $$
declare
    removed bigint;
    more bigint;
begin
    -- Data-modifying CTEs run once and to the end whether or not the query reads them (the insert too).
    with picked as (
        select measure, dimension, week, cell, slot from flow_rollup
        where slot <> 0 and week < before
        for update skip locked
    ), moved as (
        delete from flow_rollup f using picked p
        where (f.measure, f.dimension, f.week, f.cell, f.slot) = (p.measure, p.dimension, p.week, p.cell, p.slot)
        returning f.*
    ), buckets as (
        select m.measure, m.dimension, m.week, m.cell, e >> 32 as b, sum(e & 4294967295)::bigint as c
        from moved m cross join unnest(m.hist) as e
        group by 1, 2, 3, 4, 5
    ), hists as (
        select measure, dimension, week, cell, array_agg((b << 32) | c order by b) as hist
        from buckets group by 1, 2, 3, 4
    ), cells as (
        select m.measure, m.dimension, m.week, m.cell,
               min(m.municipality) as municipality, min(m.sender_municipality) as sender_municipality,
               min(m.sender_type) as sender_type, min(m.recipient_municipality) as recipient_municipality,
               min(m.recipient_type) as recipient_type, min(m.kind) as kind, min(m.trappan_step) as trappan_step,
               sum(m.value)::integer as value, sum(m.children)::integer as children,
               (sum(m.cell_key) % 4294967296)::bigint as cell_key, count(*) as rows
        from moved m
        group by m.measure, m.dimension, m.week, m.cell
    ), folded as (
        insert into flow_rollup as f (measure, dimension, week, cell, municipality, sender_municipality,
            sender_type, recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key,
            hist, slot)
        select c.measure, c.dimension, c.week, c.cell, c.municipality, c.sender_municipality, c.sender_type,
               c.recipient_municipality, c.recipient_type, c.kind, c.trappan_step, c.value, c.children,
               c.cell_key, h.hist, 0
        from cells c left join hists h using (measure, dimension, week, cell)
        order by c.measure, c.dimension, c.week, c.cell
        on conflict (measure, dimension, week, cell, slot) do update
            set value = f.value + excluded.value,
                children = f.children + excluded.children,
                cell_key = (f.cell_key + excluded.cell_key) % 4294967296,
                hist = case when excluded.hist is null then f.hist else flow_hist_add(f.hist, excluded.hist) end
    )
    select coalesce(sum(c.rows), 0) into removed from cells c;

    with picked as (
        select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, slot
        from flow_rollup_month
        where slot <> 0 and month < date_trunc('month', before)::date
        for update skip locked
    ), moved as (
        delete from flow_rollup_month f using picked p
        where (f.measure, f.dimension, f.month, f.municipality, f.sender_type, f.recipient_type, f.kind,
               f.trappan_step, f.slot)
            = (p.measure, p.dimension, p.month, p.municipality, p.sender_type, p.recipient_type, p.kind,
               p.trappan_step, p.slot)
        returning f.*
    ), buckets as (
        select m.measure, m.dimension, m.month, m.municipality, m.sender_type, m.recipient_type, m.kind,
               m.trappan_step, e >> 32 as b, sum(e & 4294967295)::bigint as c
        from moved m cross join unnest(m.hist) as e
        group by 1, 2, 3, 4, 5, 6, 7, 8, 9
    ), hists as (
        select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step,
               array_agg((b << 32) | c order by b) as hist
        from buckets group by 1, 2, 3, 4, 5, 6, 7, 8
    ), cells as (
        select m.measure, m.dimension, m.month, m.municipality, m.sender_type, m.recipient_type, m.kind,
               m.trappan_step, sum(m.value)::integer as value, sum(m.children)::integer as children,
               (sum(m.cell_key) % 4294967296)::bigint as cell_key, count(*) as rows
        from moved m
        group by 1, 2, 3, 4, 5, 6, 7, 8
    ), folded as (
        insert into flow_rollup_month as f (measure, dimension, month, municipality, sender_type,
            recipient_type, kind, trappan_step, value, children, cell_key, hist, slot)
        select c.measure, c.dimension, c.month, c.municipality, c.sender_type, c.recipient_type, c.kind,
               c.trappan_step, c.value, c.children, c.cell_key, h.hist, 0
        from cells c
        left join hists h using (measure, dimension, month, municipality, sender_type, recipient_type, kind,
                                 trappan_step)
        order by 1, 2, 3, 4, 5, 6, 7, 8
        on conflict (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step,
                     slot) do update
            set value = f.value + excluded.value,
                children = f.children + excluded.children,
                cell_key = (f.cell_key + excluded.cell_key) % 4294967296,
                hist = case when excluded.hist is null then f.hist else flow_hist_add(f.hist, excluded.hist) end
    )
    select coalesce(sum(c.rows), 0) into more from cells c;
    return removed + more;
end $$
"""


def upgrade() -> None:
    op.execute(COMPACT)


def downgrade() -> None:
    op.execute("drop function flow_compact(date)")
