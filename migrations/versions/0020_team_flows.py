"""team flows: what coordinators count of the teams around children, and when a stage is expected to end

``team_assignment.stage_ends_on`` and ``team_offer.stage_ends_on``: the day the named person's life stage
is expected to end (from the life-stages vocabulary and the child's year of birth, which itself is not
kept: every child born that year has the same day). A named person still holding the role a while after
it is past a stage transition without a new named person (docs/coordinators.md, "Teams and handovers").

``flow_team``: each team's child record key (HMAC-SHA256 of the child's pseudonym with the flows' secret
in ``flow_state``, exactly as ``flow_referral.child_key``), kept by a trigger on ``team`` whatever code
writes it, so that the coordinators' team counts sum base cells with cell keys and adjustments like every
other flow without hashing pseudonyms at query time. ``flow_team_rebuild()`` recomputes it (after a new
secret, together with ``flow_rebuild()``).

Two indexes for the reads: current assignments by role, open offers by when they were made (the
queries pass the roles and offer states from the domain: no SQL here names one).

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

TABLE = r"""
create table flow_team (
    team_id uuid primary key references team (id) on delete cascade,
    child_key bigint not null
)
"""

FUNCTIONS = [
    r"""
create function flow_team_enter() returns trigger language plpgsql as $$
declare
    s flow_state := flow_state_row();
begin
    insert into flow_team as f (team_id, child_key)
    values (new.id, flow_record_key(new.child_pseudonym, s.inner_pad, s.outer_pad))
    on conflict (team_id) do update set child_key = excluded.child_key;
    return null;
end $$
""",
    r"""
create function flow_team_rebuild() returns void language plpgsql as $$
declare
    s flow_state := flow_state_row();
begin
    lock table team in share mode;
    truncate flow_team;
    insert into flow_team (team_id, child_key)
    select t.id, flow_record_key(t.child_pseudonym, s.inner_pad, s.outer_pad) from team t;
end $$
""",
    r"""
create trigger flow_team_on_team after insert or update of child_pseudonym on team
for each row execute function flow_team_enter()
""",
]

INDEXES = [
    "create index team_assignment_role_start on team_assignment (role, team_id, period_start)",
    "create index team_offer_state on team_offer (state, offered_at)",
]


def upgrade() -> None:
    op.add_column("team_assignment", sa.Column("stage_ends_on", sa.Date, nullable=True))
    op.add_column("team_offer", sa.Column("stage_ends_on", sa.Date, nullable=True))
    op.execute(TABLE)
    for statement in (*FUNCTIONS, *INDEXES):
        op.execute(statement)
    op.execute("select flow_team_rebuild()")


def downgrade() -> None:
    op.execute("drop index team_offer_state")
    op.execute("drop index team_assignment_role_start")
    op.execute("drop trigger flow_team_on_team on team")
    op.execute("drop function flow_team_rebuild()")
    op.execute("drop function flow_team_enter()")
    op.execute("drop table flow_team")
    op.drop_column("team_offer", "stage_ends_on")
    op.drop_column("team_assignment", "stage_ends_on")
