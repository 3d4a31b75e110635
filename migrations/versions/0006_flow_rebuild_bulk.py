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

    insert into flow_child (child_key, referrals, referral_ids)
    select child_key, count(*), array_agg(referral_id order by created_at, referral_id)
    from flow_referral group by child_key;

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


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute("drop function if exists flow_rebuild_bulk()")
