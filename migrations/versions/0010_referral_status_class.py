"""referral_status_class: the flows' status rules are data the hub writes from its domain

The flow functions (0005-0007) named statuses in their text: which status a referral starts in (its rows
are not kept in ``flow_rollup``), which ones it still moves from (the partial index of stalls), which
ones are milestones whose first reaching is a lead time (received, accepted, completed) and which one is
a refusal counted by reason and suggestion (rejected). Those are the referral lifecycle's rules, and the
lifecycle is the domain's (``hub.domain.referrals``, from the vocabulary's transition table): this
revision moves them into ``referral_status_class``, one row per status, which the functions and queries
read. The hub rewrites the table from its domain after every upgrade (``hub.db.migrate``); the rows this
revision inserts are the published lifecycle (referral-statuses 1.0.0) as of this revision, so the
functions agree with the domain from the first moment.

The two partial indexes whose predicate named statuses become whole indexes led by the status
(``flow_referral_status_step``: stalls, open statuses at a step by last change; ``flow_referral_status_week``:
the requested referrals of some weeks). Queries pass the statuses they want from the domain.

Every function this revision replaces is written out here in full, as it becomes and (for the downgrade)
as 0005 and 0007 left it: a migration is a snapshot that never changes and reads on its own.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE = r"""
create table referral_status_class (
    status text primary key,
    initial boolean not null,
    open boolean not null,
    milestone boolean not null,
    rejection boolean not null
)
"""

# The published lifecycle (referral-statuses 1.0.0) as this revision found it; the hub rewrites the rows
# from its domain after every upgrade.
SEED = r"""
insert into referral_status_class (status, initial, open, milestone, rejection) values
    ('requested', true, true, false, false),
    ('received', false, true, true, false),
    ('accepted', false, true, true, false),
    ('in-progress', false, true, false, false),
    ('on-hold', false, true, false, false),
    ('completed', false, false, true, false),
    ('rejected', false, false, false, true),
    ('cancelled', false, false, false, false),
    ('failed', false, false, false, false),
    ('entered-in-error', false, false, false, false)
"""

INDEXES = [
    "drop index flow_referral_open",
    "drop index flow_referral_requested",
    "create index flow_referral_status_step on flow_referral (status, trappan_step, changed_at)",
    "create index flow_referral_status_week on flow_referral (status, week)",
]

INDEXES_0005 = [
    "drop index flow_referral_status_step",
    "drop index flow_referral_status_week",
    """create index flow_referral_open on flow_referral (trappan_step, changed_at)
       where status in ('requested', 'received', 'accepted', 'in-progress', 'on-hold')""",
    "create index flow_referral_requested on flow_referral (week) where status = 'requested'",
]

# 0005's flow_in, its refusal read from the table (stable now: it reads one).
IN = r"""
create or replace function flow_in(o flow_referral, measure text) returns boolean
language sql stable parallel safe as $$
    select case
        when measure = 'sent' then true
        when starts_with(measure, 'status:') then o.status = substr(measure, 8)
        when starts_with(measure, 'lead:') then substr(measure, 6) = any(o.reached)
        when starts_with(measure, 'rejected:') then
            coalesce(o.reason, 'unspecified') = substr(measure, 10)
            and o.status in (select c.status from referral_status_class c where c.rejection)
        when measure = 'suggested' then o.suggested
        when measure = 'redirected' then o.redirected
        else false
    end
$$
"""

# 0005's flow_event, each status's class read once from the table.
EVENT = r"""
create or replace function flow_event(e referral_event) returns void
language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
    r flow_referral;
    measures text[] := '{}';
    deltas integer[] := '{}';
    seconds float8[] := '{}';
    is_suggested boolean := false;
    moved_from referral_status_class;
    moved_to referral_status_class;
begin
    if e.type <> 'status' or e.to_status is null or e.from_status is null then
        return;
    end if;
    select * into r from flow_referral where referral_id = e.referral_id;
    if not found or e.from_status = e.to_status then
        return;
    end if;
    select * into moved_from from referral_status_class where status = e.from_status;
    select * into moved_to from referral_status_class where status = e.to_status;
    if not coalesce(moved_from.initial, false) then
        measures := measures || ('status:' || e.from_status);
        deltas := deltas || -1;
        seconds := seconds || null::float8;
    end if;
    measures := measures || ('status:' || e.to_status);
    deltas := deltas || 1;
    seconds := seconds || null::float8;
    if moved_to.milestone and not e.to_status = any(r.reached) then
        measures := measures || ('lead:' || e.to_status);
        deltas := deltas || 1;
        seconds := seconds || greatest(0, extract(epoch from e.occurred_at - r.created_at))::float8;
    end if;
    if moved_to.rejection then
        measures := measures || ('rejected:' || coalesce(e.reason_code, 'unspecified'));
        deltas := deltas || 1;
        seconds := seconds || null::float8;
        is_suggested := e.suggested_organisation is not null or e.suggested_service is not null;
        if is_suggested then
            measures := measures || 'suggested'::text;
            deltas := deltas || 1;
            seconds := seconds || null::float8;
            insert into flow_suggestion (referral_id, child_key, suggested_organisation, suggested_service,
                                         rejected_at)
            values (r.referral_id, r.child_key, e.suggested_organisation, e.suggested_service, e.occurred_at)
            on conflict do nothing;
        end if;
    end if;
    perform flow_apply(r, measures, deltas, seconds);
    update flow_referral
    set status = e.to_status,
        changed_at = e.occurred_at,
        reason = case when moved_to.rejection then coalesce(e.reason_code, 'unspecified') else reason end,
        suggested = suggested or is_suggested,
        reached = case when moved_to.milestone and not e.to_status = any(reached)
                       then reached || e.to_status else reached end
    where referral_id = e.referral_id;
end $$
"""

# 0007's flow_enter: whether the referral starts in the initial status, from the table.
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

# 0007's flow_rebuild: a referral without a first event starts in the initial status.
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
            perform flow_enter(r, coalesce(e.to_status, (select c.status from referral_status_class c where c.initial)))
            from referral r left join referral_event e on e.referral_id = r.id and e.from_status is null
            where r.id = step.id;
        else
            perform flow_event(e) from referral_event e where e.referral_id = step.id and e.seq = step.seq;
        end if;
    end loop;
end $$
"""

# 0007's flow_rebuild_bulk, every status rule from the table.
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

# What the downgrade restores, as 0005 and 0007 left it.
IN_0005 = r"""
create or replace function flow_in(o flow_referral, measure text) returns boolean
language sql immutable parallel safe as $$
    select case
        when measure = 'sent' then true
        when starts_with(measure, 'status:') then o.status = substr(measure, 8)
        when starts_with(measure, 'lead:') then substr(measure, 6) = any(o.reached)
        when starts_with(measure, 'rejected:') then
            o.status = 'rejected' and coalesce(o.reason, 'unspecified') = substr(measure, 10)
        when measure = 'suggested' then o.suggested
        when measure = 'redirected' then o.redirected
        else false
    end
$$
"""

EVENT_0005 = r"""
create or replace function flow_event(e referral_event) returns void
language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
    r flow_referral;
    measures text[] := '{}';
    deltas integer[] := '{}';
    seconds float8[] := '{}';
    is_suggested boolean := false;
begin
    if e.type <> 'status' or e.to_status is null or e.from_status is null then
        return;
    end if;
    select * into r from flow_referral where referral_id = e.referral_id;
    if not found or e.from_status = e.to_status then
        return;
    end if;
    if e.from_status <> 'requested' then
        measures := measures || ('status:' || e.from_status);
        deltas := deltas || -1;
        seconds := seconds || null::float8;
    end if;
    measures := measures || ('status:' || e.to_status);
    deltas := deltas || 1;
    seconds := seconds || null::float8;
    if e.to_status in ('received', 'accepted', 'completed') and not e.to_status = any(r.reached) then
        measures := measures || ('lead:' || e.to_status);
        deltas := deltas || 1;
        seconds := seconds || greatest(0, extract(epoch from e.occurred_at - r.created_at))::float8;
    end if;
    if e.to_status = 'rejected' then
        measures := measures || ('rejected:' || coalesce(e.reason_code, 'unspecified'));
        deltas := deltas || 1;
        seconds := seconds || null::float8;
        is_suggested := e.suggested_organisation is not null or e.suggested_service is not null;
        if is_suggested then
            measures := measures || 'suggested'::text;
            deltas := deltas || 1;
            seconds := seconds || null::float8;
            insert into flow_suggestion (referral_id, child_key, suggested_organisation, suggested_service,
                                         rejected_at)
            values (r.referral_id, r.child_key, e.suggested_organisation, e.suggested_service, e.occurred_at)
            on conflict do nothing;
        end if;
    end if;
    perform flow_apply(r, measures, deltas, seconds);
    update flow_referral
    set status = e.to_status,
        changed_at = e.occurred_at,
        reason = case when e.to_status = 'rejected' then coalesce(e.reason_code, 'unspecified') else reason end,
        suggested = suggested or is_suggested,
        reached = case when e.to_status in ('received', 'accepted', 'completed') and not e.to_status = any(reached)
                       then reached || e.to_status else reached end
    where referral_id = e.referral_id;
end $$
"""

ENTER_0007 = r"""
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

REBUILD_0007 = r"""
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

REBUILD_BULK_0007 = r"""
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


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(SEED)
    for statement in (IN, EVENT, ENTER, REBUILD, REBUILD_BULK, *INDEXES):
        op.execute(statement)


def downgrade() -> None:
    for statement in (IN_0005, EVENT_0005, ENTER_0007, REBUILD_0007, REBUILD_BULK_0007, *INDEXES_0005):
        op.execute(statement)
    op.execute("drop table referral_status_class")
