"""flow fold: referrals and their events queued by the triggers and folded into the flow tables in batches,
off the sender's transaction

Until now the triggers on ``referral`` and ``referral_event`` called ``flow_enter``/``flow_event`` in the
sender's (or receiver's) transaction: the flow rows (``flow_child``, ``flow_referral``, the rollups) were
written and their WAL flushed per referral, about half of PostgreSQL's CPU per ``POST /v1/referrals``
(bench/RESULTS.md, issue #11). The triggers (same names, so ``bench referrals
--without-referral-triggers`` still switches them off; the event trigger keeps its ``when`` clause) now
insert one narrow row into ``flow_pending`` (a sequence number, the referral, the event, and for a
referral its status at insert, which is ``flow_enter``'s argument) and nothing else.

``flow_fold(max_rows)`` applies the oldest ``max_rows`` visible queue rows, in ``seq`` order, and deletes
them, in the caller's transaction, under a transaction-level advisory lock (7274229) so one fold runs at a
time (a second waits, then sees what the first left). It is exactly what the triggers did, row by row:

- **Order.** A referral's events are inserted by transactions that lock the referral's row first (a
  transition, a delivery), and the referral's own transaction has committed before any of them can see
  it: so each event's ``seq`` is above its referral's, and when an event's queue row is visible its
  referral's is too (committed earlier). Events of one referral take turns on the referral's row lock,
  each inserting after the previous one committed, so their ``seq`` follow their order too. A row of a
  transaction still open when a fold runs is invisible to it and folded by a later fold: only rows of
  *different* referrals can be folded out of ``seq`` order that way, and those were ordered by lock
  order, not commit order, under the triggers as well (two children's rows touch disjoint flow rows;
  one child's referrals meet only through ``flow_child``, ``flow_suggestion`` and the shared-dimension
  lookups, which saw the other transaction's rows only once it had committed, exactly as a fold sees
  rows only once they are committed). The organisations' types and municipalities, and the status
  classes, are read when the row is folded (about a second later) rather than at insert, as the
  rebuilds read them.
- **The fast path.** A batch's referrals are entered set-based (``flow_fold_new``) for every child whose
  referrals in the batch all start in an initial status, who has no open suggestion (a rejection of one
  of its referrals that named another organisation and was not yet followed) and none of whose referrals
  is rejected with a suggestion in the batch: the common case. Its ``flow_child`` count (plus its
  referrals in the batch), its ``flow_referral`` rows and the grouped ``sent`` increments (value: the
  referrals; children and cell key: the children with no referral entered before in the cell with that
  dimension) in one statement. This is what ``flow_enter`` gives such referrals in any order: ``sent``'s
  children count distinct children per row, which does not depend on the order, and there is no
  suggestion such a referral could follow. Every other row (the other children's referrals, and every
  event) is replayed by ``flow_enter``/``flow_event`` in ``seq`` order after them: an event reads nothing
  the fast path writes but its referral's row (which must be there first) and the child's other
  referrals in the cell, which count only in ``sent`` while they are in their initial status, and
  ``sent`` is the one measure no event moves.
- **Slots.** The fold is the only writer of the rollups, so it writes slot 0 (``hub.flow_rollup_slot``
  set for its transaction, as ``flow_rebuild`` does) and takes no slot lock; the slots stay for the rows
  already spread and for compatibility.

The rebuilds and the compaction take the same lock: ``flow_rebuild()`` and ``flow_rebuild_bulk()`` (now
``flow_rebuild_tables()``/``flow_rebuild_bulk_tables()`` under the lock) empty the queue in their
transaction: they hold ``referral`` and ``referral_event`` in share mode from before they read them to
their commit, so every queued row's referral or event is committed and counted by them, and no new one
can be queued meanwhile. ``flow_compact(before)`` (0027, now ``flow_compact_slots``) waits for a running
fold rather than interleave its slot-0 updates with the fold's.

The runtime role gets nothing new on referral content: it already reads and writes the hub's tables, and
``flow_pending`` holds identifiers only.

The downgrade folds whatever is queued (committed) and restores 0027's triggers and functions.

Revision ID: 0030
Revises: 0029
"""

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

FOLD_LOCK = 7274229  # single-key advisory lock space, beside migrations' 7274201 and the audit sealer's 7274211

QUEUE = """
create table flow_pending (
    seq bigint generated always as identity primary key,
    referral_id uuid not null,
    event_id uuid,
    status varchar(32)
)
"""

ON_REFERRAL = """
create or replace function flow_on_referral() returns trigger language plpgsql as $$
begin
    insert into flow_pending (referral_id, status) values (new.id, new.status);
    return null;
end $$
"""

ON_EVENT = """
create or replace function flow_on_referral_event() returns trigger language plpgsql as $$
begin
    insert into flow_pending (referral_id, event_id) values (new.referral_id, new.id);
    return null;
end $$
"""

# The set-based fast path (see above): the seqs it entered.
FOLD_NEW = r"""
create function flow_fold_new(batch bigint[]) returns bigint[] language plpgsql as $$
declare
    entered bigint[];
begin
    with entries as (
        select p.seq, ref.id, ref.created_at, ref.kind, ref.dimensions, ref.trappan_step,
               ref.sender_organisation, ref.recipient_organisation, p.status,
               flow_record_key(ref.child_pseudonym, s.inner_pad, s.outer_pad) as child_key,
               exists (select from referral_status_class c where c.status = p.status and c.initial) as initial
        from flow_pending p join referral ref on ref.id = p.referral_id, flow_state s
        where p.seq = any(batch) and p.event_id is null and s.id = 1
    ), suggesting as (  -- children a rejection in this batch may suggest another organisation for
        select flow_record_key(ref.child_pseudonym, s.inner_pad, s.outer_pad) as child_key
        from flow_pending p join referral_event e on e.id = p.event_id join referral ref on ref.id = e.referral_id,
             flow_state s
        where p.seq = any(batch) and p.event_id is not null and s.id = 1
          and (e.suggested_organisation is not null or e.suggested_service is not null)
    ), built as (
        select e.seq, e.id as referral_id,
               md5(concat_ws('|', x.week, x.sender_municipality, so.type, x.recipient_municipality, ro.type,
                             e.kind, x.trappan_step))::uuid as cell,
               x.week, coalesce(so.municipality_code, ro.municipality_code, 'county') as municipality,
               x.sender_municipality, so.type as sender_type, x.recipient_municipality, ro.type as recipient_type,
               e.kind, x.trappan_step,
               array['*'] || case cardinality(e.dimensions)
                                 when 0 then array['none']
                                 when 1 then e.dimensions::text[]
                                 else array(select distinct d from unnest(e.dimensions::text[]) as d order by d)
                             end as dimensions,
               e.child_key, e.status, e.created_at,
               bool_and(e.initial and so.id is not null and ro.id is not null)
                   over (partition by e.child_key) as eligible
        from entries e
        left join organisation so on so.id = e.sender_organisation
        left join organisation ro on ro.id = e.recipient_organisation
        cross join lateral (
            select date_trunc('week', e.created_at at time zone 'Europe/Stockholm')::date as week,
                   coalesce(so.municipality_code, 'county') as sender_municipality,
                   coalesce(ro.municipality_code, 'county') as recipient_municipality,
                   coalesce(e.trappan_step, -1)::smallint as trappan_step
        ) as x
    ), fresh as (
        select b.* from built b
        where b.eligible
          and not exists (select from flow_suggestion fs where fs.child_key = b.child_key and fs.followed_by is null)
          and b.child_key not in (select child_key from suggesting)
    ), children as (
        insert into flow_child as c (child_key, referrals)
        select child_key, count(*) from fresh group by child_key order by child_key
        on conflict (child_key) do update set referrals = c.referrals + excluded.referrals
    ), referrals as (
        insert into flow_referral
        select referral_id, cell, week, municipality, sender_municipality, sender_type, recipient_municipality,
               recipient_type, kind, trappan_step, dimensions, child_key, status, null, false, false, '{}',
               created_at, created_at
        from fresh
    ), per_child as (
        -- A child counts in a row once: unless a referral of it entered before (the statement's snapshot
        -- is before this batch's rows) is in the cell with the dimension.
        select f.cell, d.dimension, f.week, f.municipality, f.sender_municipality, f.sender_type,
               f.recipient_municipality, f.recipient_type, f.kind, f.trappan_step, f.child_key, count(*) as n,
               not exists (select from flow_referral o
                           where o.cell = f.cell and o.child_key = f.child_key and d.dimension = any(o.dimensions))
                   as new
        from fresh f cross join unnest(f.dimensions) as d(dimension)
        group by f.cell, d.dimension, f.week, f.municipality, f.sender_municipality, f.sender_type,
                 f.recipient_municipality, f.recipient_type, f.kind, f.trappan_step, f.child_key
    ), rollups as (
        insert into flow_rollup_sent as f (measure, dimension, week, cell, municipality, sender_municipality,
            sender_type, recipient_municipality, recipient_type, kind, trappan_step, value, children, cell_key, slot)
        select 'sent', g.dimension, g.week, g.cell, g.municipality, g.sender_municipality, g.sender_type,
               g.recipient_municipality, g.recipient_type, g.kind, g.trappan_step, sum(g.n),
               count(*) filter (where g.new), coalesce(sum(g.child_key) filter (where g.new), 0) % 4294967296, 0
        from per_child g
        group by g.dimension, g.week, g.cell, g.municipality, g.sender_municipality, g.sender_type,
                 g.recipient_municipality, g.recipient_type, g.kind, g.trappan_step
        order by g.dimension, g.week, g.cell
        on conflict (measure, dimension, week, cell, slot) do update
            set value = f.value + excluded.value,
                children = f.children + excluded.children,
                cell_key = (f.cell_key + excluded.cell_key) % 4294967296
    )
    select coalesce(array_agg(seq), '{}') into entered from fresh;
    return entered;
end $$
"""

FOLD = rf"""
create function flow_fold(max_rows integer) returns integer language plpgsql as $$
declare
    batch bigint[];
    entered bigint[];
    item flow_pending;
begin
    perform pg_advisory_xact_lock({FOLD_LOCK});
    -- A statement of its own after the lock: its snapshot sees what a fold that held the lock left.
    select coalesce(array_agg(seq), '{{}}') into batch
    from (select seq from flow_pending order by seq limit max_rows) as p;
    if cardinality(batch) = 0 then
        return 0;
    end if;
    -- The only writer of the rollups: slot 0, without a slot lock (as flow_rebuild).
    perform set_config('hub.flow_rollup_slot', '0', true);
    perform flow_state_row();  -- the record-key secret, made on first use
    entered := flow_fold_new(batch);
    for item in
        select * from flow_pending where seq = any(batch) and not seq = any(entered) order by seq
    loop
        if item.event_id is null then
            perform flow_enter(r, item.status) from referral r where r.id = item.referral_id;
        else
            perform flow_event(e) from referral_event e where e.id = item.event_id;
        end if;
    end loop;
    delete from flow_pending where seq = any(batch);
    return cardinality(batch);
end $$
"""

# The rebuilds and the compaction under the fold's lock (see above).
WRAPPERS = [
    "alter function flow_rebuild() rename to flow_rebuild_tables",
    "alter function flow_rebuild_bulk() rename to flow_rebuild_bulk_tables",
    "alter function flow_compact(date) rename to flow_compact_slots",
    f"""create function flow_rebuild() returns void language plpgsql as $$
    begin
        perform pg_advisory_xact_lock({FOLD_LOCK});
        perform flow_rebuild_tables();
        delete from flow_pending;  -- every queued row's referral or event is counted by the rebuild
    end $$""",
    f"""create function flow_rebuild_bulk() returns void language plpgsql as $$
    begin
        perform pg_advisory_xact_lock({FOLD_LOCK});
        perform flow_rebuild_bulk_tables();
        delete from flow_pending;
    end $$""",
    f"""create function flow_compact(before date) returns bigint language plpgsql as $$
    begin
        perform pg_advisory_xact_lock({FOLD_LOCK});
        return flow_compact_slots(before);
    end $$""",
]

# The downgrade: 0005's trigger functions, the functions' old names.
ON_REFERRAL_0005 = """
create or replace function flow_on_referral() returns trigger language plpgsql as $$
begin
    perform flow_enter(new, new.status);
    return null;
end $$
"""

ON_EVENT_0005 = """
create or replace function flow_on_referral_event() returns trigger language plpgsql as $$
begin
    perform flow_event(new);
    return null;
end $$
"""

UNWRAP = [
    "drop function flow_rebuild()",
    "drop function flow_rebuild_bulk()",
    "drop function flow_compact(date)",
    "alter function flow_rebuild_tables() rename to flow_rebuild",
    "alter function flow_rebuild_bulk_tables() rename to flow_rebuild_bulk",
    "alter function flow_compact_slots(date) rename to flow_compact",
]


def upgrade() -> None:
    for statement in (QUEUE, FOLD_NEW, FOLD, *WRAPPERS, ON_REFERRAL, ON_EVENT):
        op.execute(statement)


def downgrade() -> None:
    # The triggers first (nothing queued from here on), then whatever was queued, folded.
    for statement in (ON_REFERRAL_0005, ON_EVENT_0005):
        op.execute(statement)
    op.execute("select flow_fold(2147483647)")
    for statement in (*UNWRAP, "drop function flow_fold(integer)", "drop function flow_fold_new(bigint[])"):
        op.execute(statement)
    op.execute("drop table flow_pending")
