"""flows: rollups of referral metadata for regional coordinators, kept current by a trigger

Every referral inserted into ``referral`` and every status event inserted into ``referral_event``
(whatever code writes them) updates, in the same transaction, the referral's rows in the rollups. See
``docs/coordinators.md`` ("Queries"); in short:

- ``flow_referral``: one row per referral with what the rollups need of it: its *cell* (ISO week of
  sending in Swedish time, sender municipality and type, recipient municipality and type, kind, Trappan
  step), its wellbeing dimensions, its child's record key and its state (status, rejection reason,
  suggested, redirected, which of received/accepted/completed it reached, when it last changed).
  Stalls and the exact counts of small groups are read from it.
- ``flow_rollup``: one row per measure x dimension x cell (dimension ``*``: every referral; ``none``:
  referrals without one). Measures: ``sent``, ``status:<code>`` (current status; ``requested`` is not
  kept: a referral is requested for seconds, and those few are read from ``flow_referral``),
  ``lead:<status>`` (reached it, with a lead-time histogram), ``rejected:<reason>``, ``suggested``
  (rejected with a suggested alternative) and ``redirected`` (the child was then sent there).
  ``value`` counts referrals, ``children`` distinct children, ``cell_key`` the sum of their record keys
  (mod 2^32). A child joins or leaves a row's children when no other referral of the child in the same
  cell is in the measure (those are found through ``flow_referral_child``; concurrent changes for one
  child are serialised on its ``flow_child`` row).
- ``flow_child``: each child's referrals; ``flow_state.max_child_referrals`` is the most any child has,
  which bounds how often one child can be counted when rows are merged.
- ``flow_suggestion``: rejections with a suggested alternative, until the child is sent there.
- ``flow_state``: the secret behind record keys (as HMAC-SHA256 pads; made on first use, never leaves
  the database) and ``max_child_referrals``.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Statuses from which a referral still moves (referral-statuses 1.0.0: the non-terminal ones).
OPEN = "('requested', 'received', 'accepted', 'in-progress', 'on-hold')"

TABLES = f"""
create table flow_state (
    id smallint primary key default 1 check (id = 1),
    inner_pad bytea not null,
    outer_pad bytea not null,
    max_child_referrals integer not null default 0,
    created_at timestamptz not null default now()
);

create table flow_referral (
    referral_id uuid primary key,
    cell uuid not null,
    week date not null,
    municipality text not null,
    sender_municipality text not null,
    sender_type text not null,
    recipient_municipality text not null,
    recipient_type text not null,
    kind text not null,
    trappan_step smallint not null,
    dimensions text[] not null,
    child_key bigint not null,
    status text not null,
    reason text,
    suggested boolean not null default false,
    redirected boolean not null default false,
    reached text[] not null default '{{}}',
    created_at timestamptz not null,
    changed_at timestamptz not null
);
create index flow_referral_week on flow_referral using brin (week);
-- Stalls: open referrals at a step, by their last change.
create index flow_referral_open on flow_referral (trappan_step, changed_at) where status in {OPEN};
create index flow_referral_requested on flow_referral (week) where status = 'requested';

create table flow_rollup (
    measure text not null,
    dimension text not null,
    week date not null,
    cell uuid not null,
    municipality text not null,
    sender_municipality text not null,
    sender_type text not null,
    recipient_municipality text not null,
    recipient_type text not null,
    kind text not null,
    trappan_step smallint not null,
    value integer not null,
    children integer not null,
    cell_key bigint not null,
    hist bigint[],
    -- The upsert's key and the queries' index: a measure (or a few), a dimension, a range of weeks.
    primary key (measure, dimension, week, cell)
) with (fillfactor = 80);

create table flow_child (
    child_key bigint primary key,
    referrals integer not null,
    referral_ids uuid[] not null
);

create table flow_suggestion (
    referral_id uuid primary key,
    child_key bigint not null,
    suggested_organisation text,
    suggested_service text,
    rejected_at timestamptz not null,
    followed_by uuid
);
create index flow_suggestion_open on flow_suggestion (child_key) where followed_by is null;
"""

FUNCTIONS = r"""
-- The state row, made on first use (also after the tables were emptied): a 32-byte secret from two
-- random UUIDs (gen_random_uuid draws from the strong random source), kept as its HMAC pads.
create function flow_state_row() returns flow_state language plpgsql as $$
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
end $$;

-- hub.domain.disclosure.record_key: HMAC-SHA256(secret, child), first 8 bytes big-endian, mod 2^32.
create function flow_record_key(child text, inner_pad bytea, outer_pad bytea) returns bigint
language sql immutable parallel safe as $$
    select ('x' || encode(substring(sha256(outer_pad || sha256(inner_pad || convert_to(child, 'UTF8')))
        from 5 for 4), 'hex'))::bit(32)::bigint
$$;

-- Lead-time buckets: 0 is under a minute, bucket i >= 1 holds [60 * 2^((i-1)/4), 60 * 2^(i/4)) seconds,
-- 83 is open-ended (about 2.8 years and more). hub.services.flows reads them back the same way.
create function flow_bucket(seconds double precision) returns integer
language sql immutable parallel safe as $$
    select case when seconds < 60 then 0 else least(83, 1 + floor(4 * log(2, (seconds / 60)::numeric)))::int end
$$;

-- A sparse histogram: elements bucket << 32 | count. Adds ``more`` (same form) to ``h``.
create function flow_hist_add(h bigint[], more bigint[]) returns bigint[]
language plpgsql immutable parallel safe as $$
declare
    e bigint;
    i integer;
begin
    if h is null then
        return more;
    end if;
    foreach e in array coalesce(more, '{}') loop
        i := null;
        for j in 1..coalesce(array_length(h, 1), 0) loop
            if h[j] >> 32 = e >> 32 then
                i := j;
                exit;
            end if;
        end loop;
        if i is null then
            h := h || e;
        else
            h[i] := h[i] + (e & 4294967295);
        end if;
    end loop;
    return h;
end $$;

-- Whether a referral (as flow_referral has it now) is counted in a measure.
create function flow_in(o flow_referral, measure text) returns boolean
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
$$;

-- Apply measure changes (+1 / -1 referral, with a lead time in seconds or null) to the referral's rows,
-- one per dimension, in one statement. Its child joins (or leaves) a row's children unless another
-- referral of the child in the same cell is in that measure too; when there are such others they are
-- read under the child's flow_child lock, so two transactions changing them take turns. Rows are
-- written in key order, so two transactions writing the same rows never wait for each other in a cycle.
create function flow_apply(r flow_referral, measures text[], deltas integer[], seconds double precision[])
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
end $$;

-- A new referral (as inserted, in ``status``): enter it (its cell, its child) and count it sent; and as a
-- redirection when it goes where an earlier rejection of the same child suggested.
create function flow_enter(ref referral, status text) returns void
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
end $$;

-- One referral event, as inserted (the first, requested, came with the referral). A status event
-- moves the referral between status rows; reaching received, accepted or completed records the lead
-- time since it was sent; a rejection counts its reason and, with a suggested alternative, waits for
-- the child to be sent there.
create function flow_event(e referral_event) returns void
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
end $$;

create function flow_on_referral() returns trigger language plpgsql as $$
begin
    perform flow_enter(new, new.status);
    return null;
end $$;

create function flow_on_referral_event() returns trigger language plpgsql as $$
begin
    perform flow_event(new);
    return null;
end $$;

-- Everything again from the raw events (after a restore, or to check the trigger): the same rows as
-- the trigger wrote, record keys included (the secret is kept).
create function flow_rebuild() returns void language plpgsql as $$
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
end $$;
"""

TRIGGER = """
create trigger flow_referral after insert on referral
for each row execute function flow_on_referral();

create trigger flow_referral_event after insert on referral_event
for each row execute function flow_on_referral_event();
"""


def _statements(sql: str) -> list[str]:
    """One statement at a time (the driver prepares each): split at semicolons outside $$ bodies, with
    the comments between statements left out."""
    parts: list[str] = []
    current: list[str] = []
    for index, piece in enumerate(sql.split("$$")):
        if index % 2:  # inside a function body
            current.append(piece)
            continue
        piece = "\n".join(line for line in piece.splitlines() if not line.strip().startswith("--"))
        *done, rest = piece.split(";")
        for chunk in done:
            current.append(chunk)
            parts.append("$$".join(current))
            current = []
        current.append(rest)
    parts.append("$$".join(current))
    return [part.strip() for part in parts if part.strip()]


def upgrade() -> None:
    for statement in _statements(TABLES + FUNCTIONS + TRIGGER):
        op.execute(statement)
    op.execute("select flow_rebuild()")  # referrals sent before this migration


def downgrade() -> None:
    op.execute("drop trigger if exists flow_referral_event on referral_event")
    op.execute("drop trigger if exists flow_referral on referral")
    for fn in (
        "flow_on_referral_event()",
        "flow_on_referral()",
        "flow_rebuild()",
        "flow_event(referral_event)",
        "flow_enter(referral, text)",
        "flow_apply(flow_referral, text[], integer[], double precision[])",
        "flow_in(flow_referral, text)",
        "flow_hist_add(bigint[], bigint[])",
        "flow_bucket(double precision)",
        "flow_record_key(text, bytea, bytea)",
        "flow_state_row()",
    ):
        op.execute(f"drop function if exists {fn}")
    for table in ("flow_suggestion", "flow_child", "flow_rollup", "flow_referral", "flow_state"):
        op.execute(f"drop table if exists {table}")
