"""flow_enter cost: a new referral's flow rows written with fewer statements and fewer lookups

The trigger on ``referral`` (``flow_on_referral`` -> ``flow_enter``) was the largest cost left in
PostgreSQL per referral (bench/RESULTS.md, issue #11). Measured statement by statement on the embedded
PostgreSQL (``pg_stat_user_tables``/``pg_stat_user_indexes`` before and after N referrals, and the
backend's CPU with parts of the function cut out), the time went to fixed costs per statement and to
lookups repeated for each rollup row, not to the writes, which stay as they were:

- the referral's flow row was built by a call of ``flow_state_row()`` (a function reading
  ``flow_state``), a join of the two organisations, a query for the sorted distinct dimensions and a
  query for the initial status class, each a statement of its own. It is now one statement; the
  dimensions are sorted only when there are two or more (none and one are sorted already), and
  ``flow_state_row()`` is called only when the state row does not exist yet (the first referral after
  the tables were emptied), after which the function starts over;
- both organisations were found by scanning ``organisation`` (some 150 rows in a few pages: the planner
  prefers that to its primary key) — a comparison with every organisation per referral.
  ``enable_seqscan = off`` for the function's statements makes each a primary-key lookup; every other
  statement in it reads by key already;
- whether the child's other referrals in the cell share a dimension was an ``exists`` per rollup row,
  which the planner evaluated twice per row (once for ``children``, once for ``cell_key``): four index
  scans of ``flow_referral_cell`` for a referral with one dimension. It is now one lookup of any other
  referral of the child in the cell (skipped, as before, for the child's first referral): when that
  referral has all of this one's dimensions, which is how a child's referrals in one cell usually are,
  every row is shared; otherwise each dimension is looked up as before, once;
- ``flow_slot()`` was called for each rollup row; it is called once, and its rows go straight to the
  ``sent`` partition of ``flow_rollup`` (0006) instead of being routed there row by row;
- the open suggestions of the child are not looked for when this is the child's first referral
  (``flow_child`` counts every referral entered for the child, so none of them can have been rejected);
- ``flow_slot()`` stores the slot it chose with an assignment rather than a query.

Every row written is the same as before (the tests compare the rollups with ``flow_rebuild()`` and with
an independent computation). ``flow_event``/``flow_apply`` (status events, delivery) are unchanged;
``referral_event``'s trigger already skips the events that move nothing (its ``when`` clause).

The functions this revision replaces are written out in full, as they become and (for the downgrade) as
0025 left them: a migration is a snapshot that never changes and reads on its own.

Revision ID: 0026
Revises: 0025
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

# 0025's flow_slot, the chosen slot kept with an assignment (``perform`` runs a query).
SLOT = r"""
create or replace function flow_slot() returns smallint language plpgsql volatile as $$
declare
    held text := current_setting('hub.flow_rollup_slot', true);
    chosen smallint;
begin
    if held <> '' then  -- null or '' before this transaction chose one
        return held::smallint;
    end if;
    for candidate in 0..15 loop
        if pg_try_advisory_xact_lock(7274223, candidate) then
            chosen := candidate;
            exit;
        end if;
    end loop;
    -- Every slot is being written: share one, waiting for its rows' locks as before slots.
    chosen := coalesce(chosen, pg_backend_pid() % 16);
    held := set_config('hub.flow_rollup_slot', chosen::text, true);
    return chosen;
end $$
"""

# 0025's flow_enter, with the same rows written in fewer statements (see above).
ENTER = r"""
create or replace function flow_enter(ref referral, status text) returns void
language plpgsql set plan_cache_mode = force_generic_plan set enable_seqscan = off as $$
declare
    r flow_referral;
    initial boolean;
    n integer;
    shared text[] := '{}';  -- the dimensions in which another referral of the child in the cell is sent
    rollup_slot smallint;
    earlier flow_referral;
    suggestion uuid;
begin
    select ref.id, md5(concat_ws('|', x.week, x.sender_municipality, so.type, x.recipient_municipality, ro.type,
                                 ref.kind, x.trappan_step))::uuid,
           x.week, coalesce(so.municipality_code, ro.municipality_code, 'county'), x.sender_municipality, so.type,
           x.recipient_municipality, ro.type, ref.kind, x.trappan_step,
           array['*'] || case cardinality(ref.dimensions)
                             when 0 then array['none']
                             when 1 then ref.dimensions::text[]
                             else array(select distinct d from unnest(ref.dimensions::text[]) as d order by d)
                         end,
           flow_record_key(ref.child_pseudonym, s.inner_pad, s.outer_pad), flow_enter.status,
           null, false, false, '{}', ref.created_at, ref.created_at,
           (select c.initial from referral_status_class c where c.status = flow_enter.status)
    into r.referral_id, r.cell, r.week, r.municipality, r.sender_municipality, r.sender_type,
         r.recipient_municipality, r.recipient_type, r.kind, r.trappan_step, r.dimensions, r.child_key, r.status,
         r.reason, r.suggested, r.redirected, r.reached, r.created_at, r.changed_at, initial
    from flow_state s, organisation so, organisation ro,
         lateral (select date_trunc('week', ref.created_at at time zone 'Europe/Stockholm')::date as week,
                         coalesce(so.municipality_code, 'county') as sender_municipality,
                         coalesce(ro.municipality_code, 'county') as recipient_municipality,
                         coalesce(ref.trappan_step, -1)::smallint as trappan_step) as x
    where s.id = 1 and so.id = ref.sender_organisation and ro.id = ref.recipient_organisation;
    if not found then
        if exists (select from flow_state) then
            return;  -- an organisation is missing
        end if;
        perform flow_state_row();  -- the secret, made on first use
        perform flow_enter(ref, status);
        return;
    end if;

    -- The child's row first: it serialises everything about this child from here to commit.
    insert into flow_child as c (child_key, referrals) values (r.child_key, 1)
    on conflict (child_key) do update set referrals = c.referrals + 1
    returning referrals into n;
    insert into flow_referral values (r.*) on conflict do nothing;
    if not found then
        return;  -- entered already
    end if;
    if initial then
        if n > 1 then
            select o.dimensions into shared from flow_referral o
            where o.cell = r.cell and o.child_key = r.child_key and o.referral_id <> r.referral_id;
            if not found then
                shared := '{}';
            elsif not r.dimensions <@ shared then
                shared := array(select d from unnest(r.dimensions) as d
                                where exists (select from flow_referral o
                                              where o.cell = r.cell and o.child_key = r.child_key
                                                and o.referral_id <> r.referral_id and d = any(o.dimensions)));
            end if;
        end if;
        rollup_slot := flow_slot();
        -- Straight into the partition every ``sent`` row is in (0006), rather than routed there row by row.
        insert into flow_rollup_sent as f (measure, dimension, week, cell, municipality, sender_municipality,
            sender_type, recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, slot)
        select 'sent', d.dimension, r.week, r.cell, r.municipality, r.sender_municipality, r.sender_type,
               r.recipient_municipality, r.recipient_type, r.kind, r.trappan_step, 1,
               case when d.dimension = any(shared) then 0 else 1 end,
               case when d.dimension = any(shared) then 0 else r.child_key end, rollup_slot
        from unnest(r.dimensions) as d(dimension)
        order by d.dimension
        on conflict (measure, dimension, week, cell, slot) do update
            set value = f.value + excluded.value,
                children = f.children + excluded.children,
                cell_key = (f.cell_key + excluded.cell_key) % 4294967296;
    else
        perform flow_apply(r, array['sent', 'status:' || r.status], array[1, 1], array[null, null]::float8[]);
    end if;
    if n = 1 then
        return;  -- the child's first referral: no rejection of the child has suggested anything yet
    end if;

    select fs.referral_id into suggestion
    from flow_suggestion fs
    where fs.child_key = r.child_key and fs.followed_by is null and fs.rejected_at <= r.created_at
      and (fs.suggested_organisation = ref.recipient_organisation or fs.suggested_service = ref.service_id)
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

# The downgrade: 0025's texts.
SLOT_0025 = r"""
create or replace function flow_slot() returns smallint language plpgsql volatile as $$
declare
    held text := current_setting('hub.flow_rollup_slot', true);
    chosen smallint;
begin
    if held <> '' then  -- null or '' before this transaction chose one
        return held::smallint;
    end if;
    for candidate in 0..15 loop
        if pg_try_advisory_xact_lock(7274223, candidate) then
            chosen := candidate;
            exit;
        end if;
    end loop;
    -- Every slot is being written: share one, waiting for its rows' locks as before slots.
    chosen := coalesce(chosen, pg_backend_pid() % 16);
    perform set_config('hub.flow_rollup_slot', chosen::text, true);
    return chosen;
end $$
"""

ENTER_0025 = r"""
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


def upgrade() -> None:
    for statement in (SLOT, ENTER):
        op.execute(statement)


def downgrade() -> None:
    for statement in (SLOT_0025, ENTER_0025):
        op.execute(statement)
