"""flow rollup slots: one base cell's counters spread over a few rows, so that concurrent referrals of one
cell commit together

Every referral one sending organisation sends in one week lands in the same rollup cell, and its trigger
(``flow_enter``; ``flow_apply`` for later events) upserted the same ``flow_rollup`` rows (``sent`` for
``*`` and each dimension; and ``flow_rollup_month``'s for lead times) as every other: each transaction
held those rows' locks through its commit's WAL flush, so one cell's referrals committed one after
another, each with its own fsync (bench/RESULTS.md, issue #11, "where the time goes", item 2).

``slot`` (smallint, 0 to 15) is now part of both tables' primary keys. A base cell (measure x dimension x
week x cell; for the monthly table measure x dimension x month x municipality x sender type x recipient
type x kind x step) is the sum of its slots' rows: ``value``, ``children``, ``cell_key`` (mod 2^32) and
the histogram's counts per bucket are all sums of the changes written to the cell, whichever row each
went to, so every reader sums the slots per base cell first (``hub.db.flow_sql``) and gets exactly the
figures, and so the disclosure adjustments, that one row per cell held. A single slot's row may hold a
negative value or children (a referral counted in one slot and moved out of the status in another);
only the sums mean anything.

``flow_slot()`` gives the slot a transaction writes: the lowest whose advisory lock no other running
transaction holds, taken (``pg_try_advisory_xact_lock``, never waiting) and kept to the end of the
transaction, like the rows' own locks, and remembered for the transaction in the setting
``hub.flow_rollup_slot``, so a transaction holds one slot however many rows it writes. Two transactions
in their commit at the same moment thus write different rows and their commits are flushed together;
when no other writer runs, everything goes to slot 0, so a cell has more than one row only where
referrals really overlapped (at most as many as overlapped), and the rollups stay as compact as the reads
need (a slot from the backend's pid would spread a cell of a few referrals over as many rows). Sixteen
slots: more than the writers the default pools let run at once in one process (10 + 10 overflow,
most of them not in a rollup write at any moment); when all sixteen are taken the transaction shares one
(the backend's pid modulo 16) and waits for its rows as before. The rebuilds write slot 0: ``flow_rebuild``
sets it before replaying (it holds the raw tables locked, so no trigger writes meanwhile) and
``flow_rebuild_bulk``/``flow_month_fill`` leave the column at its default. Existing rows become slot 0.

The same revision takes the last row every referral could wait on besides its child's out of the
trigger: ``flow_enter`` raised ``flow_state.max_child_referrals`` (the most referrals any child has) in
the referral's transaction whenever a child's count passed it, so the referrals that passed it at the
same moment took turns on ``flow_state``'s single row, each until the other's commit was flushed (seen
in the wait events at 8 clients with one sender). Nothing reads the column (it was a bound kept for
reasoning about how often one child can be counted in merged rows) and ``flow_child`` holds the same
figure (``select max(referrals) from flow_child``), so it is dropped; the rebuilds no longer write it.
What one sender's referrals still share is each child's ``flow_child`` row, which serialises the
referrals of the same child (its distinct-children counts rest on that).

The functions this revision replaces are written out in full, as they become and (for the downgrade) as
0007 and 0010 left them: a migration is a snapshot that never changes and reads on its own. The
downgrade folds every base cell's slots into one row (slot 0) before dropping the column, and computes
``max_child_referrals`` from ``flow_child``.

Revision ID: 0025
Revises: 0024
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

# The two-key advisory lock space (apart from the single-key locks of migrations and the audit sealer):
# (SLOT_LOCK, slot) is held by the transaction writing that slot.
SLOT_LOCK = 7274223
SLOTS = 16

COLUMNS = [
    "alter table flow_rollup add column slot smallint not null default 0",
    "alter table flow_rollup drop constraint flow_rollup_pkey",
    "alter table flow_rollup add primary key (measure, dimension, week, cell, slot)",
    "alter table flow_rollup_month add column slot smallint not null default 0",
    "alter table flow_rollup_month drop constraint flow_rollup_month_pkey",
    """alter table flow_rollup_month add primary key
       (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, slot)""",
    # The rows in other slots than 0, which the readers look for first: where a query's range has none,
    # each row is a whole cell and is read without summing slots (hub.db.flow_sql.rows_of).
    "create index flow_rollup_spread on flow_rollup (measure, dimension, week) where slot <> 0",
    "create index flow_rollup_month_spread on flow_rollup_month (measure, dimension, month) where slot <> 0",
]

SLOT = rf"""
create function flow_slot() returns smallint language plpgsql volatile as $$
declare
    held text := current_setting('hub.flow_rollup_slot', true);
    chosen smallint;
begin
    if held <> '' then  -- null or '' before this transaction chose one
        return held::smallint;
    end if;
    for candidate in 0..{SLOTS - 1} loop
        if pg_try_advisory_xact_lock({SLOT_LOCK}, candidate) then
            chosen := candidate;
            exit;
        end if;
    end loop;
    -- Every slot is being written: share one, waiting for its rows' locks as before slots.
    chosen := coalesce(chosen, pg_backend_pid() % {SLOTS});
    perform set_config('hub.flow_rollup_slot', chosen::text, true);
    return chosen;
end $$
"""

# 0007's flow_apply, writing the transaction's slot (the conflict key includes it).
APPLY = r"""
create or replace function flow_apply(r flow_referral, measures text[], deltas integer[], seconds double precision[])
returns void language plpgsql as $$
declare
    others flow_referral[] := '{}';
    rollup_slot smallint := flow_slot();
begin
    if exists (select 1 from flow_referral o
               where o.child_key = r.child_key and o.cell = r.cell and o.referral_id <> r.referral_id) then
        -- Another referral of the child in this cell: take turns with whoever changes it, then look again.
        -- (A referral entering the cell concurrently changes only ``sent``, which no event changes.)
        perform from flow_child where child_key = r.child_key for update;
        select coalesce(array_agg(o), '{}') into others from flow_referral o
        where o.child_key = r.child_key and o.cell = r.cell and o.referral_id <> r.referral_id;
    end if;
    insert into flow_rollup as f (measure, dimension, week, cell, municipality, sender_municipality, sender_type,
        recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, hist, slot)
    select x.measure, x.dimension, r.week, r.cell, r.municipality, r.sender_municipality, r.sender_type,
           r.recipient_municipality, r.recipient_type, r.kind, r.trappan_step, x.delta,
           case when x.shared then 0 else x.delta end,
           case when x.shared then 0 else (x.delta * r.child_key + 4294967296) % 4294967296 end,
           case when x.secs is null then null else array[(flow_bucket(x.secs)::bigint << 32) | 1] end,
           rollup_slot
    from (
        select c.measure, d.dimension, c.delta, c.secs,
               cardinality(others) > 0 and exists (
                   select 1 from unnest(others) as o
                   where d.dimension = any(o.dimensions) and flow_in(o, c.measure)
               ) as shared
        from unnest(measures, deltas, seconds) as c(measure, delta, secs),
             unnest(r.dimensions) as d(dimension)
    ) as x
    order by x.measure, x.dimension
    on conflict (measure, dimension, week, cell, slot) do update
        set value = f.value + excluded.value,
            children = f.children + excluded.children,
            cell_key = (f.cell_key + excluded.cell_key) % 4294967296,
            hist = case when excluded.hist is null then f.hist else flow_hist_add(f.hist, excluded.hist) end;
    if not exists (select 1 from unnest(measures) as m where starts_with(m, 'lead:')) then
        return;
    end if;
    insert into flow_rollup_month as f (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, value, children, cell_key, hist, slot)
    select x.measure, x.dimension, (r.week + 3 - extract(day from r.week + 3)::integer + 1), r.municipality, r.sender_type,
           r.recipient_type, r.kind, r.trappan_step, x.delta,
           case when x.shared then 0 else x.delta end,
           case when x.shared then 0 else (x.delta * r.child_key + 4294967296) % 4294967296 end,
           x.hist, rollup_slot
    from (
    select c.measure, d.dimension, c.delta,
           case when c.secs is null then null else array[(flow_bucket(c.secs)::bigint << 32) | 1] end as hist,
           cardinality(others) > 0 and exists (
               select 1 from unnest(others) as o
               where d.dimension = any(o.dimensions) and flow_in(o, c.measure)
           ) as shared
    from unnest(measures, deltas, seconds) as c(measure, delta, secs),
         unnest(r.dimensions) as d(dimension)
) as x
    where starts_with(x.measure, 'lead:')
    order by x.measure, x.dimension
    on conflict (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, slot) do update
        set value = f.value + excluded.value,
            children = f.children + excluded.children,
            cell_key = (f.cell_key + excluded.cell_key) % 4294967296,
            hist = case when excluded.hist is null then f.hist else flow_hist_add(f.hist, excluded.hist) end;
end $$
"""  # noqa: E501 (the function's text as 0007 had it)

# 0010's flow_enter, its ``sent`` rows written to the transaction's slot, and flow_state no longer updated.
ENTER = r"""
create or replace function flow_enter(ref referral, status text) returns void
language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
    s flow_state := flow_state_row();
    r flow_referral;
    src record;
    n integer;
    earlier flow_referral;
    suggestion uuid;
begin
    select ref.id, ref.created_at, ref.kind, ref.dimensions, ref.trappan_step, ref.child_pseudonym,
           ref.recipient_organisation, ref.service_id,
           so.type as sender_type, so.municipality_code as sender_municipality,
           ro.type as recipient_type, ro.municipality_code as recipient_municipality
    into src
    from organisation so, organisation ro
    where so.id = ref.sender_organisation and ro.id = ref.recipient_organisation;
    if not found then
        return;
    end if;
    r.referral_id := src.id;
    r.week := date_trunc('week', src.created_at at time zone 'Europe/Stockholm')::date;
    r.municipality := coalesce(src.sender_municipality, src.recipient_municipality, 'county');
    r.sender_municipality := coalesce(src.sender_municipality, 'county');
    r.sender_type := src.sender_type;
    r.recipient_municipality := coalesce(src.recipient_municipality, 'county');
    r.recipient_type := src.recipient_type;
    r.kind := src.kind;
    r.trappan_step := coalesce(src.trappan_step, -1);
    r.cell := md5(concat_ws('|', r.week, r.sender_municipality, r.sender_type, r.recipient_municipality,
                            r.recipient_type, r.kind, r.trappan_step))::uuid;
    r.dimensions := array['*'] || case when cardinality(src.dimensions) = 0 then array['none']
                                       else array(select distinct d from unnest(src.dimensions) as d order by d) end;
    r.child_key := flow_record_key(src.child_pseudonym, s.inner_pad, s.outer_pad);
    r.status := flow_enter.status;
    r.suggested := false;
    r.redirected := false;
    r.reached := '{}';
    r.created_at := src.created_at;
    r.changed_at := src.created_at;

    -- The child's row first: it serialises everything about this child from here to commit.
    insert into flow_child as c (child_key, referrals) values (r.child_key, 1)
    on conflict (child_key) do update set referrals = c.referrals + 1
    returning referrals into n;
    insert into flow_referral values (r.*) on conflict do nothing;
    if not found then
        return;  -- entered already
    end if;
    if (select c.initial from referral_status_class c where c.status = r.status) then
        insert into flow_rollup as f (measure, dimension, week, cell, municipality, sender_municipality,
            sender_type, recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, slot)
        select 'sent', d.dimension, r.week, r.cell, r.municipality, r.sender_municipality, r.sender_type,
               r.recipient_municipality, r.recipient_type, r.kind, r.trappan_step, 1,
               case when x.shared then 0 else 1 end, case when x.shared then 0 else r.child_key end, flow_slot()
        from unnest(r.dimensions) as d(dimension)
        cross join lateral (
            select n > 1 and exists (
                select 1 from flow_referral o
                where o.child_key = r.child_key and o.cell = r.cell and o.referral_id <> r.referral_id
                  and d.dimension = any(o.dimensions)
            ) as shared
        ) as x
        order by d.dimension
        on conflict (measure, dimension, week, cell, slot) do update
            set value = f.value + excluded.value,
                children = f.children + excluded.children,
                cell_key = (f.cell_key + excluded.cell_key) % 4294967296;
    else
        perform flow_apply(r, array['sent', 'status:' || r.status], array[1, 1], array[null, null]::float8[]);
    end if;

    select fs.referral_id into suggestion
    from flow_suggestion fs
    where fs.child_key = r.child_key and fs.followed_by is null and fs.rejected_at <= r.created_at
      and (fs.suggested_organisation = src.recipient_organisation or fs.suggested_service = src.service_id)
    order by fs.rejected_at
    limit 1
    for update;
    if found then
        update flow_suggestion set followed_by = r.referral_id where referral_id = suggestion;
        select * into earlier from flow_referral where referral_id = suggestion;
        perform flow_apply(earlier, array['redirected'], array[1], array[null]::float8[]);
        update flow_referral set redirected = true where referral_id = suggestion;
    end if;
end $$
"""

# 0010's flow_rebuild, every row in slot 0, flow_state as it is.
REBUILD = r"""
create or replace function flow_rebuild() returns void language plpgsql as $$
declare
    step record;
begin
    lock table referral, referral_event in share mode;
    truncate flow_referral, flow_rollup, flow_child, flow_suggestion, flow_rollup_month;
    -- Slot 0 for every row, without a slot lock: no trigger writes while the tables are locked.
    perform set_config('hub.flow_rollup_slot', '0', true);
    for step in
        select id, seq from (
            select created_at as at, id, 0 as seq from referral
            union all
            select occurred_at, referral_id, seq from referral_event where from_status is not null
        ) as timeline
        order by at, seq = 0 desc, id, seq
    loop
        if step.seq = 0 then
            perform flow_enter(r, coalesce(e.to_status, (select c.status from referral_status_class c where c.initial)))
            from referral r left join referral_event e on e.referral_id = r.id and e.from_status is null
            where r.id = step.id;
        else
            perform flow_event(e) from referral_event e where e.referral_id = step.id and e.seq = step.seq;
        end if;
    end loop;
end $$
"""

# 0010's flow_rebuild_bulk, without flow_state.max_child_referrals.
REBUILD_BULK = r"""
create or replace function flow_rebuild_bulk() returns void language plpgsql
set work_mem = '256MB' set maintenance_work_mem = '256MB' as $$
declare
    s flow_state := flow_state_row();
    pair record;
    last_referral uuid;
begin
    lock table referral, referral_event in share mode;
    truncate flow_referral, flow_rollup, flow_child, flow_suggestion, flow_rollup_month;

    -- Each referral as flow_enter enters it (its first event's status, as flow_rebuild takes it) and as
    -- flow_event leaves it after its moving events, in their order (seq).
    insert into flow_referral
    select src.id, src.cell, src.week, src.municipality, src.sender_municipality, src.sender_type,
           src.recipient_municipality, src.recipient_type, src.kind, src.trappan_step, src.dimensions,
           flow_record_key(src.child_pseudonym, s.inner_pad, s.outer_pad),
           coalesce(m.status, src.initial), m.reason, coalesce(m.suggested, false), false,
           coalesce(m.reached, '{}'), src.created_at, coalesce(m.changed_at, src.created_at)
    from (
        select r.id, r.created_at, r.kind, r.child_pseudonym,
               date_trunc('week', r.created_at at time zone 'Europe/Stockholm')::date as week,
               coalesce(so.municipality_code, ro.municipality_code, 'county') as municipality,
               coalesce(so.municipality_code, 'county') as sender_municipality, so.type as sender_type,
               coalesce(ro.municipality_code, 'county') as recipient_municipality, ro.type as recipient_type,
               coalesce(r.trappan_step, -1)::smallint as trappan_step,
               md5(concat_ws('|', date_trunc('week', r.created_at at time zone 'Europe/Stockholm')::date,
                             coalesce(so.municipality_code, 'county'), so.type,
                             coalesce(ro.municipality_code, 'county'), ro.type, r.kind,
                             coalesce(r.trappan_step, -1)))::uuid as cell,
               array['*'] || case when cardinality(r.dimensions) = 0 then array['none']
                                  else array(select distinct d from unnest(r.dimensions) as d order by d) end
                   as dimensions,
               coalesce((select e.to_status from referral_event e
                         where e.referral_id = r.id and e.from_status is null order by e.seq limit 1),
                        (select c.status from referral_status_class c where c.initial)) as initial
        from referral r
        join organisation so on so.id = r.sender_organisation
        join organisation ro on ro.id = r.recipient_organisation
    ) as src
    left join (
        select e.referral_id,
               (array_agg(e.to_status order by e.seq desc))[1] as status,
               (array_agg(e.occurred_at order by e.seq desc))[1] as changed_at,
               (array_agg(coalesce(e.reason_code, 'unspecified') order by e.seq desc)
                   filter (where tc.rejection))[1] as reason,
               bool_or(tc.rejection
                       and (e.suggested_organisation is not null or e.suggested_service is not null)) as suggested,
               array(select x from unnest(array_agg(e.to_status order by e.seq)
                         filter (where tc.milestone))
                         with ordinality as u(x, i) group by x order by min(i)) as reached
        from referral_event e
        left join referral_status_class tc on tc.status = e.to_status
        where e.type = 'status' and e.from_status is not null and e.to_status is not null
          and e.from_status <> e.to_status
        group by e.referral_id
    ) as m on m.referral_id = src.id;

    insert into flow_child (child_key, referrals)
    select child_key, count(*) from flow_referral group by child_key;

    -- The first rejection with a suggestion of each referral (flow_event's insert does nothing after it).
    insert into flow_suggestion (referral_id, child_key, suggested_organisation, suggested_service, rejected_at)
    select distinct on (e.referral_id) e.referral_id, f.child_key, e.suggested_organisation, e.suggested_service,
           e.occurred_at
    from referral_event e join flow_referral f on f.referral_id = e.referral_id
    where e.type = 'status' and e.from_status is not null
      and e.from_status not in (select c.status from referral_status_class c where c.rejection)
      and e.to_status in (select c.status from referral_status_class c where c.rejection)
      and (e.suggested_organisation is not null or e.suggested_service is not null)
    order by e.referral_id, e.seq;

    -- Redirections, in the order flow_enter meets the referrals: each takes the earliest suggestion of its
    -- child still open that it matches. Only pairs that could match are visited.
    for pair in
        select fs.referral_id as suggestion, r.id as referral
        from flow_suggestion fs
        join flow_referral f on f.child_key = fs.child_key
        join referral r on r.id = f.referral_id
        where fs.rejected_at <= r.created_at and r.id <> fs.referral_id
          and (fs.suggested_organisation = r.recipient_organisation or fs.suggested_service = r.service_id)
        order by r.created_at, r.id, fs.rejected_at
    loop
        continue when pair.referral = last_referral;
        update flow_suggestion set followed_by = pair.referral
        where referral_id = pair.suggestion and followed_by is null;
        if found then
            last_referral := pair.referral;
            update flow_referral set redirected = true where referral_id = pair.suggestion;
        end if;
    end loop;

    -- Every measure each referral is in now, and every status it has left (its row stays, at zero), once
    -- per dimension; lead measures with their bucket.
    create temporary table flow_bulk_member on commit drop as
    select t.measure, d.dimension, f.cell, f.child_key, t.inside, t.bucket
    from flow_referral f
    cross join lateral (
        select 'sent' as measure, true as inside, null::integer as bucket
        union all
        select 'rejected:' || f.reason, true, null
        where f.status in (select c.status from referral_status_class c where c.rejection)
        union all
        select 'suggested', true, null where f.suggested
        union all
        select 'redirected', true, null where f.redirected
    ) as t
    cross join unnest(f.dimensions) as d(dimension);

    insert into flow_bulk_member
    select 'status:' || x.status, d.dimension, f.cell, f.child_key, x.status = f.status, null::integer
    from flow_referral f
    join (
        select e.referral_id, e.to_status as status from referral_event e
        where e.type = 'status' and e.from_status is not null and e.to_status is not null
          and e.from_status <> e.to_status
        union
        select e.referral_id, e.from_status from referral_event e
        where e.type = 'status' and e.from_status is not null and e.to_status is not null
          and e.from_status <> e.to_status
        union
        select f2.referral_id, f2.status from flow_referral f2
    ) as x on x.referral_id = f.referral_id
    cross join unnest(f.dimensions) as d(dimension)
    where x.status not in (select c.status from referral_status_class c where c.initial);

    insert into flow_bulk_member
    select 'lead:' || l.to_status, d.dimension, f.cell, f.child_key, true,
           flow_bucket(greatest(0, extract(epoch from l.occurred_at - f.created_at))::float8)
    from (
        select distinct on (e.referral_id, e.to_status) e.referral_id, e.to_status, e.occurred_at
        from referral_event e
        where e.type = 'status' and e.from_status is not null and e.from_status <> e.to_status
          and e.to_status in (select c.status from referral_status_class c where c.milestone)
        order by e.referral_id, e.to_status, e.seq
    ) as l
    join flow_referral f on f.referral_id = l.referral_id
    cross join unnest(f.dimensions) as d(dimension);

    -- Distinct children in two steps (per child, then per row): two hash aggregates, no sort.
    insert into flow_rollup (measure, dimension, week, cell, municipality, sender_municipality, sender_type,
        recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, hist)
    select agg.measure, agg.dimension, c.week, agg.cell, c.municipality, c.sender_municipality, c.sender_type,
           c.recipient_municipality, c.recipient_type, c.kind, c.trappan_step, agg.value, agg.children,
           agg.cell_key, h.hist
    from (
        select measure, dimension, cell, sum(n)::integer as value, (count(*) filter (where n > 0))::integer
                   as children,
               coalesce(sum(child_key) filter (where n > 0), 0) % 4294967296 as cell_key
        from (
            select measure, dimension, cell, child_key, count(*) filter (where inside) as n
            from flow_bulk_member group by measure, dimension, cell, child_key
        ) as per_child
        group by measure, dimension, cell
    ) as agg
    join (select distinct on (cell) cell, week, municipality, sender_municipality, sender_type,
                 recipient_municipality, recipient_type, kind, trappan_step from flow_referral) as c
      on c.cell = agg.cell
    left join (
        select measure, dimension, cell, array_agg((bucket::bigint << 32) | n order by bucket) as hist
        from (
            select measure, dimension, cell, bucket, count(*) as n
            from flow_bulk_member where bucket is not null group by measure, dimension, cell, bucket
        ) as per_bucket
        group by measure, dimension, cell
    ) as h on h.measure = agg.measure and h.dimension = agg.dimension and h.cell = agg.cell;

    drop table flow_bulk_member;
    analyze flow_referral;
    perform flow_month_fill();
    analyze flow_rollup;
    analyze flow_rollup_month;
end $$
"""

APPLY_0007 = r"""
create or replace function flow_apply(r flow_referral, measures text[], deltas integer[], seconds double precision[])
returns void language plpgsql as $$
declare
    others flow_referral[] := '{}';
begin
    if exists (select 1 from flow_referral o
               where o.child_key = r.child_key and o.cell = r.cell and o.referral_id <> r.referral_id) then
        -- Another referral of the child in this cell: take turns with whoever changes it, then look again.
        -- (A referral entering the cell concurrently changes only ``sent``, which no event changes.)
        perform from flow_child where child_key = r.child_key for update;
        select coalesce(array_agg(o), '{}') into others from flow_referral o
        where o.child_key = r.child_key and o.cell = r.cell and o.referral_id <> r.referral_id;
    end if;
    insert into flow_rollup as f (measure, dimension, week, cell, municipality, sender_municipality, sender_type,
        recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, hist)
    select x.measure, x.dimension, r.week, r.cell, r.municipality, r.sender_municipality, r.sender_type,
           r.recipient_municipality, r.recipient_type, r.kind, r.trappan_step, x.delta,
           case when x.shared then 0 else x.delta end,
           case when x.shared then 0 else (x.delta * r.child_key + 4294967296) % 4294967296 end,
           case when x.secs is null then null else array[(flow_bucket(x.secs)::bigint << 32) | 1] end
    from (
        select c.measure, d.dimension, c.delta, c.secs,
               cardinality(others) > 0 and exists (
                   select 1 from unnest(others) as o
                   where d.dimension = any(o.dimensions) and flow_in(o, c.measure)
               ) as shared
        from unnest(measures, deltas, seconds) as c(measure, delta, secs),
             unnest(r.dimensions) as d(dimension)
    ) as x
    order by x.measure, x.dimension
    on conflict (measure, dimension, week, cell) do update
        set value = f.value + excluded.value,
            children = f.children + excluded.children,
            cell_key = (f.cell_key + excluded.cell_key) % 4294967296,
            hist = case when excluded.hist is null then f.hist else flow_hist_add(f.hist, excluded.hist) end;
    if not exists (select 1 from unnest(measures) as m where starts_with(m, 'lead:')) then
        return;
    end if;
    insert into flow_rollup_month as f (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, value, children, cell_key, hist)
    select x.measure, x.dimension, (r.week + 3 - extract(day from r.week + 3)::integer + 1), r.municipality, r.sender_type,
           r.recipient_type, r.kind, r.trappan_step, x.delta,
           case when x.shared then 0 else x.delta end,
           case when x.shared then 0 else (x.delta * r.child_key + 4294967296) % 4294967296 end,
           x.hist
    from (
    select c.measure, d.dimension, c.delta,
           case when c.secs is null then null else array[(flow_bucket(c.secs)::bigint << 32) | 1] end as hist,
           cardinality(others) > 0 and exists (
               select 1 from unnest(others) as o
               where d.dimension = any(o.dimensions) and flow_in(o, c.measure)
           ) as shared
    from unnest(measures, deltas, seconds) as c(measure, delta, secs),
         unnest(r.dimensions) as d(dimension)
) as x
    where starts_with(x.measure, 'lead:')
    order by x.measure, x.dimension
    on conflict (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step) do update
        set value = f.value + excluded.value,
            children = f.children + excluded.children,
            cell_key = (f.cell_key + excluded.cell_key) % 4294967296,
            hist = case when excluded.hist is null then f.hist else flow_hist_add(f.hist, excluded.hist) end;
end $$
"""  # noqa: E501 (the function's text as 0007 had it)

ENTER_0010 = r"""
create or replace function flow_enter(ref referral, status text) returns void
language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
    s flow_state := flow_state_row();
    r flow_referral;
    src record;
    n integer;
    earlier flow_referral;
    suggestion uuid;
begin
    select ref.id, ref.created_at, ref.kind, ref.dimensions, ref.trappan_step, ref.child_pseudonym,
           ref.recipient_organisation, ref.service_id,
           so.type as sender_type, so.municipality_code as sender_municipality,
           ro.type as recipient_type, ro.municipality_code as recipient_municipality
    into src
    from organisation so, organisation ro
    where so.id = ref.sender_organisation and ro.id = ref.recipient_organisation;
    if not found then
        return;
    end if;
    r.referral_id := src.id;
    r.week := date_trunc('week', src.created_at at time zone 'Europe/Stockholm')::date;
    r.municipality := coalesce(src.sender_municipality, src.recipient_municipality, 'county');
    r.sender_municipality := coalesce(src.sender_municipality, 'county');
    r.sender_type := src.sender_type;
    r.recipient_municipality := coalesce(src.recipient_municipality, 'county');
    r.recipient_type := src.recipient_type;
    r.kind := src.kind;
    r.trappan_step := coalesce(src.trappan_step, -1);
    r.cell := md5(concat_ws('|', r.week, r.sender_municipality, r.sender_type, r.recipient_municipality,
                            r.recipient_type, r.kind, r.trappan_step))::uuid;
    r.dimensions := array['*'] || case when cardinality(src.dimensions) = 0 then array['none']
                                       else array(select distinct d from unnest(src.dimensions) as d order by d) end;
    r.child_key := flow_record_key(src.child_pseudonym, s.inner_pad, s.outer_pad);
    r.status := flow_enter.status;
    r.suggested := false;
    r.redirected := false;
    r.reached := '{}';
    r.created_at := src.created_at;
    r.changed_at := src.created_at;

    -- The child's row first: it serialises everything about this child from here to commit.
    insert into flow_child as c (child_key, referrals) values (r.child_key, 1)
    on conflict (child_key) do update set referrals = c.referrals + 1
    returning referrals into n;
    insert into flow_referral values (r.*) on conflict do nothing;
    if not found then
        return;  -- entered already
    end if;
    if n > s.max_child_referrals then  -- s was read first: the stored maximum is at least that
        update flow_state set max_child_referrals = n where id = 1 and max_child_referrals < n;
    end if;
    if (select c.initial from referral_status_class c where c.status = r.status) then
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
    else
        perform flow_apply(r, array['sent', 'status:' || r.status], array[1, 1], array[null, null]::float8[]);
    end if;

    select fs.referral_id into suggestion
    from flow_suggestion fs
    where fs.child_key = r.child_key and fs.followed_by is null and fs.rejected_at <= r.created_at
      and (fs.suggested_organisation = src.recipient_organisation or fs.suggested_service = src.service_id)
    order by fs.rejected_at
    limit 1
    for update;
    if found then
        update flow_suggestion set followed_by = r.referral_id where referral_id = suggestion;
        select * into earlier from flow_referral where referral_id = suggestion;
        perform flow_apply(earlier, array['redirected'], array[1], array[null]::float8[]);
        update flow_referral set redirected = true where referral_id = suggestion;
    end if;
end $$
"""

REBUILD_0010 = r"""
create or replace function flow_rebuild() returns void language plpgsql as $$
declare
    step record;
begin
    lock table referral, referral_event in share mode;
    truncate flow_referral, flow_rollup, flow_child, flow_suggestion, flow_rollup_month;
    update flow_state set max_child_referrals = 0;
    for step in
        select id, seq from (
            select created_at as at, id, 0 as seq from referral
            union all
            select occurred_at, referral_id, seq from referral_event where from_status is not null
        ) as timeline
        order by at, seq = 0 desc, id, seq
    loop
        if step.seq = 0 then
            perform flow_enter(r, coalesce(e.to_status, (select c.status from referral_status_class c where c.initial)))
            from referral r left join referral_event e on e.referral_id = r.id and e.from_status is null
            where r.id = step.id;
        else
            perform flow_event(e) from referral_event e where e.referral_id = step.id and e.seq = step.seq;
        end if;
    end loop;
end $$
"""

REBUILD_BULK_0010 = r"""
create or replace function flow_rebuild_bulk() returns void language plpgsql
set work_mem = '256MB' set maintenance_work_mem = '256MB' as $$
declare
    s flow_state := flow_state_row();
    pair record;
    last_referral uuid;
begin
    lock table referral, referral_event in share mode;
    truncate flow_referral, flow_rollup, flow_child, flow_suggestion, flow_rollup_month;

    -- Each referral as flow_enter enters it (its first event's status, as flow_rebuild takes it) and as
    -- flow_event leaves it after its moving events, in their order (seq).
    insert into flow_referral
    select src.id, src.cell, src.week, src.municipality, src.sender_municipality, src.sender_type,
           src.recipient_municipality, src.recipient_type, src.kind, src.trappan_step, src.dimensions,
           flow_record_key(src.child_pseudonym, s.inner_pad, s.outer_pad),
           coalesce(m.status, src.initial), m.reason, coalesce(m.suggested, false), false,
           coalesce(m.reached, '{}'), src.created_at, coalesce(m.changed_at, src.created_at)
    from (
        select r.id, r.created_at, r.kind, r.child_pseudonym,
               date_trunc('week', r.created_at at time zone 'Europe/Stockholm')::date as week,
               coalesce(so.municipality_code, ro.municipality_code, 'county') as municipality,
               coalesce(so.municipality_code, 'county') as sender_municipality, so.type as sender_type,
               coalesce(ro.municipality_code, 'county') as recipient_municipality, ro.type as recipient_type,
               coalesce(r.trappan_step, -1)::smallint as trappan_step,
               md5(concat_ws('|', date_trunc('week', r.created_at at time zone 'Europe/Stockholm')::date,
                             coalesce(so.municipality_code, 'county'), so.type,
                             coalesce(ro.municipality_code, 'county'), ro.type, r.kind,
                             coalesce(r.trappan_step, -1)))::uuid as cell,
               array['*'] || case when cardinality(r.dimensions) = 0 then array['none']
                                  else array(select distinct d from unnest(r.dimensions) as d order by d) end
                   as dimensions,
               coalesce((select e.to_status from referral_event e
                         where e.referral_id = r.id and e.from_status is null order by e.seq limit 1),
                        (select c.status from referral_status_class c where c.initial)) as initial
        from referral r
        join organisation so on so.id = r.sender_organisation
        join organisation ro on ro.id = r.recipient_organisation
    ) as src
    left join (
        select e.referral_id,
               (array_agg(e.to_status order by e.seq desc))[1] as status,
               (array_agg(e.occurred_at order by e.seq desc))[1] as changed_at,
               (array_agg(coalesce(e.reason_code, 'unspecified') order by e.seq desc)
                   filter (where tc.rejection))[1] as reason,
               bool_or(tc.rejection
                       and (e.suggested_organisation is not null or e.suggested_service is not null)) as suggested,
               array(select x from unnest(array_agg(e.to_status order by e.seq)
                         filter (where tc.milestone))
                         with ordinality as u(x, i) group by x order by min(i)) as reached
        from referral_event e
        left join referral_status_class tc on tc.status = e.to_status
        where e.type = 'status' and e.from_status is not null and e.to_status is not null
          and e.from_status <> e.to_status
        group by e.referral_id
    ) as m on m.referral_id = src.id;

    insert into flow_child (child_key, referrals)
    select child_key, count(*) from flow_referral group by child_key;

    update flow_state set max_child_referrals =
        (select coalesce(max(referrals) filter (where referrals > 1), 0) from flow_child)
    where id = 1;

    -- The first rejection with a suggestion of each referral (flow_event's insert does nothing after it).
    insert into flow_suggestion (referral_id, child_key, suggested_organisation, suggested_service, rejected_at)
    select distinct on (e.referral_id) e.referral_id, f.child_key, e.suggested_organisation, e.suggested_service,
           e.occurred_at
    from referral_event e join flow_referral f on f.referral_id = e.referral_id
    where e.type = 'status' and e.from_status is not null
      and e.from_status not in (select c.status from referral_status_class c where c.rejection)
      and e.to_status in (select c.status from referral_status_class c where c.rejection)
      and (e.suggested_organisation is not null or e.suggested_service is not null)
    order by e.referral_id, e.seq;

    -- Redirections, in the order flow_enter meets the referrals: each takes the earliest suggestion of its
    -- child still open that it matches. Only pairs that could match are visited.
    for pair in
        select fs.referral_id as suggestion, r.id as referral
        from flow_suggestion fs
        join flow_referral f on f.child_key = fs.child_key
        join referral r on r.id = f.referral_id
        where fs.rejected_at <= r.created_at and r.id <> fs.referral_id
          and (fs.suggested_organisation = r.recipient_organisation or fs.suggested_service = r.service_id)
        order by r.created_at, r.id, fs.rejected_at
    loop
        continue when pair.referral = last_referral;
        update flow_suggestion set followed_by = pair.referral
        where referral_id = pair.suggestion and followed_by is null;
        if found then
            last_referral := pair.referral;
            update flow_referral set redirected = true where referral_id = pair.suggestion;
        end if;
    end loop;

    -- Every measure each referral is in now, and every status it has left (its row stays, at zero), once
    -- per dimension; lead measures with their bucket.
    create temporary table flow_bulk_member on commit drop as
    select t.measure, d.dimension, f.cell, f.child_key, t.inside, t.bucket
    from flow_referral f
    cross join lateral (
        select 'sent' as measure, true as inside, null::integer as bucket
        union all
        select 'rejected:' || f.reason, true, null
        where f.status in (select c.status from referral_status_class c where c.rejection)
        union all
        select 'suggested', true, null where f.suggested
        union all
        select 'redirected', true, null where f.redirected
    ) as t
    cross join unnest(f.dimensions) as d(dimension);

    insert into flow_bulk_member
    select 'status:' || x.status, d.dimension, f.cell, f.child_key, x.status = f.status, null::integer
    from flow_referral f
    join (
        select e.referral_id, e.to_status as status from referral_event e
        where e.type = 'status' and e.from_status is not null and e.to_status is not null
          and e.from_status <> e.to_status
        union
        select e.referral_id, e.from_status from referral_event e
        where e.type = 'status' and e.from_status is not null and e.to_status is not null
          and e.from_status <> e.to_status
        union
        select f2.referral_id, f2.status from flow_referral f2
    ) as x on x.referral_id = f.referral_id
    cross join unnest(f.dimensions) as d(dimension)
    where x.status not in (select c.status from referral_status_class c where c.initial);

    insert into flow_bulk_member
    select 'lead:' || l.to_status, d.dimension, f.cell, f.child_key, true,
           flow_bucket(greatest(0, extract(epoch from l.occurred_at - f.created_at))::float8)
    from (
        select distinct on (e.referral_id, e.to_status) e.referral_id, e.to_status, e.occurred_at
        from referral_event e
        where e.type = 'status' and e.from_status is not null and e.from_status <> e.to_status
          and e.to_status in (select c.status from referral_status_class c where c.milestone)
        order by e.referral_id, e.to_status, e.seq
    ) as l
    join flow_referral f on f.referral_id = l.referral_id
    cross join unnest(f.dimensions) as d(dimension);

    -- Distinct children in two steps (per child, then per row): two hash aggregates, no sort.
    insert into flow_rollup (measure, dimension, week, cell, municipality, sender_municipality, sender_type,
        recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, hist)
    select agg.measure, agg.dimension, c.week, agg.cell, c.municipality, c.sender_municipality, c.sender_type,
           c.recipient_municipality, c.recipient_type, c.kind, c.trappan_step, agg.value, agg.children,
           agg.cell_key, h.hist
    from (
        select measure, dimension, cell, sum(n)::integer as value, (count(*) filter (where n > 0))::integer
                   as children,
               coalesce(sum(child_key) filter (where n > 0), 0) % 4294967296 as cell_key
        from (
            select measure, dimension, cell, child_key, count(*) filter (where inside) as n
            from flow_bulk_member group by measure, dimension, cell, child_key
        ) as per_child
        group by measure, dimension, cell
    ) as agg
    join (select distinct on (cell) cell, week, municipality, sender_municipality, sender_type,
                 recipient_municipality, recipient_type, kind, trappan_step from flow_referral) as c
      on c.cell = agg.cell
    left join (
        select measure, dimension, cell, array_agg((bucket::bigint << 32) | n order by bucket) as hist
        from (
            select measure, dimension, cell, bucket, count(*) as n
            from flow_bulk_member where bucket is not null group by measure, dimension, cell, bucket
        ) as per_bucket
        group by measure, dimension, cell
    ) as h on h.measure = agg.measure and h.dimension = agg.dimension and h.cell = agg.cell;

    drop table flow_bulk_member;
    analyze flow_referral;
    perform flow_month_fill();
    analyze flow_rollup;
    analyze flow_rollup_month;
end $$
"""

# The downgrade: every base cell with rows in other slots than 0 summed into one row of slot 0 (the
# histogram's counts summed per bucket, in bucket order as the bulk rebuild writes them), then the column
# and the keys as 0024 (and 0022 before it) had them.
FOLD = [
    """create temporary table flow_rollup_folded on commit drop as
    select s.*, h.hist from (
        select measure, dimension, week, cell, municipality, sender_municipality, sender_type, recipient_municipality,
               recipient_type, kind, trappan_step, sum(value)::integer as value, sum(children)::integer as children,
               sum(cell_key) % 4294967296 as cell_key
        from flow_rollup
        where (measure, dimension, week, cell) in (
            select measure, dimension, week, cell from flow_rollup where slot <> 0)
        group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    ) as s
    left join (
        select measure, dimension, week, cell, array_agg((bucket << 32) | n order by bucket) as hist
        from (select measure, dimension, week, cell, e >> 32 as bucket, sum(e & 4294967295)::bigint as n
              from flow_rollup cross join unnest(hist) as e
              where (measure, dimension, week, cell) in (
                  select measure, dimension, week, cell from flow_rollup where slot <> 0)
              group by 1, 2, 3, 4, 5) as per_bucket
        group by 1, 2, 3, 4
    ) as h using (measure, dimension, week, cell)""",
    """delete from flow_rollup
    where (measure, dimension, week, cell) in (select measure, dimension, week, cell from flow_rollup_folded)""",
    """insert into flow_rollup (measure, dimension, week, cell, municipality, sender_municipality, sender_type,
        recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, hist)
    select measure, dimension, week, cell, municipality, sender_municipality, sender_type, recipient_municipality,
           recipient_type, kind, trappan_step, value, children, cell_key, hist from flow_rollup_folded""",
    """create temporary table flow_rollup_month_folded on commit drop as
    select s.*, h.hist from (
        select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step,
               sum(value)::integer as value, sum(children)::integer as children, sum(cell_key) % 4294967296 as cell_key
        from flow_rollup_month
        where (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step) in (
            select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step
            from flow_rollup_month where slot <> 0)
        group by 1, 2, 3, 4, 5, 6, 7, 8
    ) as s
    left join (
        select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step,
               array_agg((bucket << 32) | n order by bucket) as hist
        from (select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step,
                     e >> 32 as bucket, sum(e & 4294967295)::bigint as n
              from flow_rollup_month cross join unnest(hist) as e
              where (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step) in (
                  select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step
                  from flow_rollup_month where slot <> 0)
              group by 1, 2, 3, 4, 5, 6, 7, 8, 9) as per_bucket
        group by 1, 2, 3, 4, 5, 6, 7, 8
    ) as h using (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step)""",
    """delete from flow_rollup_month
    where (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step) in (
        select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step
        from flow_rollup_month_folded)""",
    """insert into flow_rollup_month (measure, dimension, month, municipality, sender_type, recipient_type, kind,
        trappan_step, value, children, cell_key, hist)
    select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, value, children,
           cell_key, hist from flow_rollup_month_folded""",
    "drop table flow_rollup_folded",
    "drop table flow_rollup_month_folded",
]

# flow_state.max_child_referrals again, computed from flow_child as the bulk rebuild did, in its place before
# created_at (whose values are kept).
STATE_0024 = [
    "alter table flow_state add column max_child_referrals integer not null default 0",
    """update flow_state set max_child_referrals =
        (select coalesce(max(referrals) filter (where referrals > 1), 0) from flow_child)""",
    "alter table flow_state rename column created_at to created_at_0025",
    "alter table flow_state add column created_at timestamptz not null default now()",
    "update flow_state set created_at = created_at_0025",
    "alter table flow_state drop column created_at_0025",
]

COLUMNS_0024 = [
    "drop index flow_rollup_spread",
    "drop index flow_rollup_month_spread",
    "alter table flow_rollup drop constraint flow_rollup_pkey",
    "alter table flow_rollup drop column slot",
    "alter table flow_rollup add primary key (measure, dimension, week, cell)",
    "alter table flow_rollup_month drop constraint flow_rollup_month_pkey",
    "alter table flow_rollup_month drop column slot",
    """alter table flow_rollup_month
       add primary key (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step)""",
]


def upgrade() -> None:
    for statement in (*COLUMNS, SLOT, APPLY, ENTER, REBUILD, REBUILD_BULK):
        op.execute(statement)
    op.execute("alter table flow_state drop column max_child_referrals")


def downgrade() -> None:
    for statement in (*STATE_0024, APPLY_0007, ENTER_0010, REBUILD_0010, REBUILD_BULK_0010, *FOLD, *COLUMNS_0024):
        op.execute(statement)
    op.execute("drop function flow_slot()")
