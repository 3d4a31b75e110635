"""flow_rebuild_bulk: the coordinators' rollups recomputed from the raw referral tables with set operations

``flow_rebuild()`` (0005) replays every referral and event through the trigger functions, about a
millisecond a referral: fine after a restore of a small hub, an hour for a million. This function
writes the same five tables (flow_referral, flow_rollup, flow_child, flow_suggestion and
``flow_state.max_child_referrals``) row for row from the final state of each referral, because every
rollup row the triggers keep is a function of it:

- a referral's state is its last moving status event (type ``status``, a from and a to status that
  differ, as ``flow_event`` counts them), what it first reached of received/accepted/completed and
  when, its rejection (reason, suggestion) and whether a later referral of the child followed that
  suggestion;
- a rollup row counts the referrals of its cell in its measure now (value), their distinct children
  (children) and the sum of those children's record keys mod 2^32 (cell_key), with the lead-time
  histogram of the referrals that reached it (its elements by bucket: the triggers append a bucket when
  it is first used, in whatever order events arrived, and every reader treats it as bucket -> count);
- a status a referral has left keeps its row at zero, as the triggers leave it.

Redirections are the only sequential part (each new referral follows the earliest open suggestion of
its child that it matches): they are matched in a loop over the few candidate pairs only.

Bulk loads (``hub synth``) write referral and referral_event with the triggers off and call this.

The same revision partitions ``flow_rollup`` by measure (see ``PARTITIONS``) and indexes
``flow_referral`` by (cell, child): the triggers then find a child's other
referrals in a cell through it instead of through an array of every referral of the child kept in
``flow_child`` (rewritten on each new referral, and read id by id), so a referral costs the same however
many the child has; and an exact count of the children under a few cells (``hub.db.flows``) reads only
those cells' referrals.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FUNCTION = r"""
create function flow_rebuild_bulk() returns void language plpgsql
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


# flow_rollup partitioned by measure: a query reads one measure (or a family) over a range of weeks, and
# without partitions every measure's rows of a week lie interleaved on the same pages, so reading a year
# of "sent" read the pages of every status too (15,000 pages for 30,000 rows at 1,000,000 referrals).
PARTITIONS = [
    "alter table flow_rollup rename to flow_rollup_unpartitioned",
    "alter index flow_rollup_pkey rename to flow_rollup_unpartitioned_pkey",
    """create table flow_rollup (like flow_rollup_unpartitioned including defaults including constraints,
           primary key (measure, dimension, week, cell)) partition by list (measure)""",
    "create table flow_rollup_sent partition of flow_rollup for values in ('sent') with (fillfactor = 80)",
    """create table flow_rollup_lead partition of flow_rollup
           for values in ('lead:received', 'lead:accepted', 'lead:completed') with (fillfactor = 80)""",
    "create table flow_rollup_other partition of flow_rollup default with (fillfactor = 80)",
    "insert into flow_rollup select * from flow_rollup_unpartitioned",
    "drop table flow_rollup_unpartitioned",
]

UNPARTITIONED = [
    "alter table flow_rollup rename to flow_rollup_partitioned",
    "alter index flow_rollup_pkey rename to flow_rollup_partitioned_pkey",
    """create table flow_rollup (like flow_rollup_partitioned including defaults including constraints,
           primary key (measure, dimension, week, cell)) with (fillfactor = 80)""",
    "insert into flow_rollup select * from flow_rollup_partitioned",
    "drop table flow_rollup_partitioned",
]

# flow_apply and flow_enter of 0005, finding the child's other referrals in the cell by the index.
LOOKUP = [
    "create index flow_referral_cell on flow_referral (cell, child_key)",
    "alter table flow_child drop column referral_ids",
    r"""
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
end $$;
""",
    r"""
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
end $$;
""",
]


# What the downgrade restores: flow_apply and flow_enter as 0005 wrote them (written out here, so that this
# migration reads on its own and never changes with another).
APPLY_0005 = r"""
create or replace function flow_apply(r flow_referral, measures text[], deltas integer[], seconds double precision[])
returns void language plpgsql as $$
declare
    ids uuid[];
    others flow_referral[] := '{}';
begin
    select referral_ids into ids from flow_child where child_key = r.child_key;
    if cardinality(ids) > 1 then
        select coalesce(array_agg(o), '{}') into others from flow_referral o
        where o.referral_id = any(ids) and o.cell = r.cell and o.referral_id <> r.referral_id;
    end if;
    if cardinality(others) > 0 then
        -- Another referral of the child in this cell: take turns with whoever changes it, then look again.
        -- (A referral entering the cell concurrently changes only ``sent``, which no event changes.)
        select referral_ids into ids from flow_child where child_key = r.child_key for update;
        select coalesce(array_agg(o), '{}') into others from flow_referral o
        where o.referral_id = any(ids) and o.cell = r.cell and o.referral_id <> r.referral_id;
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

ENTER_0005 = r"""
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
    insert into flow_child as c (child_key, referrals, referral_ids) values (r.child_key, 1, array[r.referral_id])
    on conflict (child_key) do update set referrals = c.referrals + 1, referral_ids = c.referral_ids || r.referral_id
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


def upgrade() -> None:
    for statement in PARTITIONS + LOOKUP:
        op.execute(statement)
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute("drop function if exists flow_rebuild_bulk()")
    # 0005's flow_apply and flow_enter again, and its id arrays rebuilt from flow_referral.
    op.execute("alter table flow_child add column referral_ids uuid[] not null default '{}'")
    op.execute(
        """update flow_child c set referral_ids = (select array_agg(o.referral_id order by o.created_at, o.referral_id)
           from flow_referral o where o.child_key = c.child_key)"""
    )
    op.execute("alter table flow_child alter column referral_ids drop default")
    for statement in (APPLY_0005, ENTER_0005):
        op.execute(statement)
    op.execute("drop index flow_referral_cell")
    for statement in UNPARTITIONED:
        op.execute(statement)
