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

Every function this revision replaces is written out here in full, as it becomes and (for the downgrade)
as 0005 and 0006 left it: a migration is a snapshot that never changes and reads on its own, so it
neither imports nor edits the text of another.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLE = r"""
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
    primary key (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step)
) with (fillfactor = 80)
"""

# Every row again from flow_rollup: sums, and each histogram's elements summed by bucket. A row's month is
# the first day of the month its week's Thursday is in: (week + 3 - extract(day from week + 3)::integer + 1).
FILL = r"""
create function flow_month_fill() returns void language sql as $$
    insert into flow_rollup_month (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, value, children, cell_key, hist)
    select s.measure, s.dimension, s.month, s.municipality, s.sender_type, s.recipient_type, s.kind,
           s.trappan_step, s.value, s.children, s.cell_key, h.hist
    from (
        select measure, dimension, (week + 3 - extract(day from week + 3)::integer + 1) as month, municipality, sender_type,
               recipient_type, kind, trappan_step, sum(value)::integer as value, sum(children)::integer as children,
               sum(cell_key) % 4294967296 as cell_key
        from flow_rollup where starts_with(measure, 'lead:')
        group by 1, 2, 3, 4, 5, 6, 7, 8
    ) as s
    left join (
        select measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step, array_agg((bucket << 32) | n order by bucket) as hist
        from (
            select measure, dimension, (week + 3 - extract(day from week + 3)::integer + 1) as month, municipality, sender_type,
                   recipient_type, kind, trappan_step, e >> 32 as bucket, sum(e & 4294967295)::bigint as n
            from flow_rollup cross join unnest(hist) as e
            where starts_with(measure, 'lead:')
            group by 1, 2, 3, 4, 5, 6, 7, 8, 9
        ) as per_bucket
        group by 1, 2, 3, 4, 5, 6, 7, 8
    ) as h using (measure, dimension, month, municipality, sender_type, recipient_type, kind, trappan_step)
$$
"""  # noqa: E501 (the function's text as 0007 always had it)

# 0006's flow_apply, and lead changes to flow_rollup_month too, after flow_rollup and in key order (two
# transactions writing the same rows never wait for each other in a cycle): the rows of the call (its
# measures x the referral's dimensions), whether the child is counted already in the row through another
# referral in the cell, and its histogram element.
APPLY = r"""
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
"""  # noqa: E501 (the function's text as 0007 always had it)

# 0006's flow_enter, writing a new referral's ``sent`` rows itself instead of through flow_apply: one
# statement instead of four (the check for the child's other referrals in the cell, the lock on the child,
# which flow_enter holds already, reading them, the upsert), and no check at all for a child's first
# referral. The same rows as flow_apply writes (``sent`` is every referral: flow_in is true for each other
# one). flow_state.max_child_referrals is updated only when the count may exceed it.
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
    if n > s.max_child_referrals then  -- s was read first: the stored maximum is at least that
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

# 0005's flow_state_row, making its pads only when it makes the row (it ran on every referral).
STATE_ROW = r"""
create or replace function flow_state_row() returns flow_state language plpgsql as $$
declare
    s flow_state;
    k bytea;
    ipad bytea;
    opad bytea;
begin
    select * into s from flow_state where id = 1;
    if found then
        return s;
    end if;
    ipad := decode(repeat('36', 64), 'hex');
    opad := decode(repeat('5c', 64), 'hex');
    k := sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'))
        || decode(repeat('00', 32), 'hex');
    for i in 0..63 loop
        ipad := set_byte(ipad, i, get_byte(k, i) # 54);
        opad := set_byte(opad, i, get_byte(k, i) # 92);
    end loop;
    insert into flow_state (id, inner_pad, outer_pad) values (1, ipad, opad) on conflict (id) do nothing;
    select * into s from flow_state where id = 1;
    return s;
end $$
"""

# 0005's flow_rebuild, emptying flow_rollup_month too.
REBUILD = r"""
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
            perform flow_enter(r, coalesce(e.to_status, 'requested'))
            from referral r left join referral_event e on e.referral_id = r.id and e.from_status is null
            where r.id = step.id;
        else
            perform flow_event(e) from referral_event e where e.referral_id = step.id and e.seq = step.seq;
        end if;
    end loop;
end $$
"""

# 0006's flow_rebuild_bulk, emptying and refilling flow_rollup_month too.
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
                        'requested') as initial
        from referral r
        join organisation so on so.id = r.sender_organisation
        join organisation ro on ro.id = r.recipient_organisation
    ) as src
    left join (
        select e.referral_id,
               (array_agg(e.to_status order by e.seq desc))[1] as status,
               (array_agg(e.occurred_at order by e.seq desc))[1] as changed_at,
               (array_agg(coalesce(e.reason_code, 'unspecified') order by e.seq desc)
                   filter (where e.to_status = 'rejected'))[1] as reason,
               bool_or(e.to_status = 'rejected'
                       and (e.suggested_organisation is not null or e.suggested_service is not null)) as suggested,
               array(select x from unnest(array_agg(e.to_status order by e.seq)
                         filter (where e.to_status in ('received', 'accepted', 'completed')))
                         with ordinality as u(x, i) group by x order by min(i)) as reached
        from referral_event e
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
    where e.type = 'status' and e.from_status is not null and e.from_status <> 'rejected'
      and e.to_status = 'rejected' and (e.suggested_organisation is not null or e.suggested_service is not null)
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
        select 'rejected:' || f.reason, true, null where f.status = 'rejected'
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
    where x.status <> 'requested';

    insert into flow_bulk_member
    select 'lead:' || l.to_status, d.dimension, f.cell, f.child_key, true,
           flow_bucket(greatest(0, extract(epoch from l.occurred_at - f.created_at))::float8)
    from (
        select distinct on (e.referral_id, e.to_status) e.referral_id, e.to_status, e.occurred_at
        from referral_event e
        where e.type = 'status' and e.from_status is not null and e.from_status <> e.to_status
          and e.to_status in ('received', 'accepted', 'completed')
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

# Status events that move nothing (a referral's first event, notes) no longer call a function at all:
# the trigger's condition is the one flow_event returns early on.
EVENT_TRIGGER = """
create trigger flow_referral_event after insert on referral_event for each row
when (new.type = 'status' and new.from_status is not null and new.to_status is not null)
execute function flow_on_referral_event()
"""

# What the downgrade restores, as 0005 and 0006 left it.
APPLY_0006 = r"""
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
end $$
"""

ENTER_0006 = r"""
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
    if n > 1 then
        update flow_state set max_child_referrals = n where id = 1 and max_child_referrals < n;
    end if;
    if r.status = 'requested' then
        perform flow_apply(r, array['sent'], array[1], array[null]::float8[]);
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

STATE_ROW_0005 = r"""
create or replace function flow_state_row() returns flow_state language plpgsql as $$
declare
    s flow_state;
    k bytea;
    ipad bytea := decode(repeat('36', 64), 'hex');
    opad bytea := decode(repeat('5c', 64), 'hex');
begin
    select * into s from flow_state where id = 1;
    if found then
        return s;
    end if;
    k := sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'))
        || decode(repeat('00', 32), 'hex');
    for i in 0..63 loop
        ipad := set_byte(ipad, i, get_byte(k, i) # 54);
        opad := set_byte(opad, i, get_byte(k, i) # 92);
    end loop;
    insert into flow_state (id, inner_pad, outer_pad) values (1, ipad, opad) on conflict (id) do nothing;
    select * into s from flow_state where id = 1;
    return s;
end $$
"""

REBUILD_0005 = r"""
create or replace function flow_rebuild() returns void language plpgsql as $$
declare
    step record;
begin
    lock table referral, referral_event in share mode;
    truncate flow_referral, flow_rollup, flow_child, flow_suggestion;
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
            perform flow_enter(r, coalesce(e.to_status, 'requested'))
            from referral r left join referral_event e on e.referral_id = r.id and e.from_status is null
            where r.id = step.id;
        else
            perform flow_event(e) from referral_event e where e.referral_id = step.id and e.seq = step.seq;
        end if;
    end loop;
end $$
"""

REBUILD_BULK_0006 = r"""
create or replace function flow_rebuild_bulk() returns void language plpgsql
set work_mem = '256MB' set maintenance_work_mem = '256MB' as $$
declare
    s flow_state := flow_state_row();
    pair record;
    last_referral uuid;
begin
    lock table referral, referral_event in share mode;
    truncate flow_referral, flow_rollup, flow_child, flow_suggestion;

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
                        'requested') as initial
        from referral r
        join organisation so on so.id = r.sender_organisation
        join organisation ro on ro.id = r.recipient_organisation
    ) as src
    left join (
        select e.referral_id,
               (array_agg(e.to_status order by e.seq desc))[1] as status,
               (array_agg(e.occurred_at order by e.seq desc))[1] as changed_at,
               (array_agg(coalesce(e.reason_code, 'unspecified') order by e.seq desc)
                   filter (where e.to_status = 'rejected'))[1] as reason,
               bool_or(e.to_status = 'rejected'
                       and (e.suggested_organisation is not null or e.suggested_service is not null)) as suggested,
               array(select x from unnest(array_agg(e.to_status order by e.seq)
                         filter (where e.to_status in ('received', 'accepted', 'completed')))
                         with ordinality as u(x, i) group by x order by min(i)) as reached
        from referral_event e
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
    where e.type = 'status' and e.from_status is not null and e.from_status <> 'rejected'
      and e.to_status = 'rejected' and (e.suggested_organisation is not null or e.suggested_service is not null)
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
        select 'rejected:' || f.reason, true, null where f.status = 'rejected'
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
    where x.status <> 'requested';

    insert into flow_bulk_member
    select 'lead:' || l.to_status, d.dimension, f.cell, f.child_key, true,
           flow_bucket(greatest(0, extract(epoch from l.occurred_at - f.created_at))::float8)
    from (
        select distinct on (e.referral_id, e.to_status) e.referral_id, e.to_status, e.occurred_at
        from referral_event e
        where e.type = 'status' and e.from_status is not null and e.from_status <> e.to_status
          and e.to_status in ('received', 'accepted', 'completed')
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
    analyze flow_rollup;
end $$
"""

EVENT_TRIGGER_0005 = """
create trigger flow_referral_event after insert on referral_event
for each row execute function flow_on_referral_event()
"""


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(FILL)
    for statement in (APPLY, ENTER, STATE_ROW, REBUILD, REBUILD_BULK):
        op.execute(statement)
    op.execute("drop trigger flow_referral_event on referral_event")
    op.execute(EVENT_TRIGGER)
    op.execute("select flow_month_fill()")
    op.execute("analyze flow_rollup_month")


def downgrade() -> None:
    for statement in (APPLY_0006, ENTER_0006, STATE_ROW_0005, REBUILD_0005, REBUILD_BULK_0006):
        op.execute(statement)
    op.execute("drop trigger flow_referral_event on referral_event")
    op.execute(EVENT_TRIGGER_0005)
    op.execute("drop function flow_month_fill()")
    op.execute("drop table flow_rollup_month")
