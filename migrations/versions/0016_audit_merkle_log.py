"""audit merkle log: plain appends, a sealer, a Merkle tree and signed checkpoints

Appending an audit entry no longer advances a per-organisation chain head (a row lock held until commit,
which serialised all of one organisation's requests): it inserts the entry and queues its id in
``audit_pending``. The sealer (one hub process at a time) moves queued entries into the log in batches:
``audit_leaf`` gives each its position ``seq`` and leaf hash, ``audit_node`` keeps every complete perfect
subtree of the RFC 9162 Merkle tree, ``audit_checkpoint`` the signed tree heads. The runtime role may
insert into and read these tables, never update or delete (``hub.db.migrate``); triggers refuse updates
and deletes to the owner too.

Existing entries (the per-organisation hash chains) become the log's first leaves, in id order, with
their nodes computed here; their chain columns (``seq``, ``hash``) and ``audit_chain_head`` stay, so the
old chains still verify, and new entries leave those columns empty. The leaf hash is
``sha256(0x00 || int8send(id) || convert_to(canonical, 'UTF8'))`` and a node's
``sha256(0x01 || left || right)``, as ``hub.domain.merkle`` computes them as of this revision.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
APPEND_ONLY_TABLES = ("audit_leaf", "audit_node", "audit_checkpoint")


def upgrade() -> None:
    op.alter_column("audit_event", "seq", nullable=True)
    op.alter_column("audit_event", "hash", nullable=True)
    op.create_table("audit_pending", sa.Column("entry_id", sa.BigInteger, primary_key=True))
    op.create_table(
        "audit_leaf",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("entry_id", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_node",
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("index", sa.BigInteger, primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.LargeBinary, nullable=False),
        sa.Column("signed_at", TS, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    op.create_index("audit_checkpoint_size", "audit_checkpoint", ["size", "id"])
    op.execute(
        """
        create function audit_log_append_only() returns trigger language plpgsql as $$
        begin
          raise exception '% is append-only', tg_table_name;
        end $$
        """
    )
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"create trigger {table}_no_update before update or delete on {table} "
            "for each row execute function audit_log_append_only()"
        )
    # The existing entries, in id order, are the log's first leaves; then each level of perfect nodes.
    op.execute(
        """
        insert into audit_leaf (seq, entry_id, leaf_hash)
        select row_number() over (order by id) - 1, id,
               sha256('\\x00'::bytea || int8send(id) || convert_to(canonical, 'UTF8'))
        from audit_event order by id
        """
    )
    bind = op.get_bind()
    level = 1
    while True:
        below = (
            "select seq as idx, leaf_hash as hash from audit_leaf"
            if level == 1
            else f"select index as idx, hash from audit_node where level = {level - 1}"
        )
        inserted = bind.execute(
            sa.text(
                f"""
                insert into audit_node (level, index, hash)
                select {level}, l.idx / 2, sha256('\\x01'::bytea || l.hash || r.hash)
                from ({below}) as l join ({below}) as r on r.idx = l.idx + 1
                where l.idx % 2 = 0
                """
            )
        ).rowcount
        if not inserted:
            break
        level += 1


def downgrade() -> None:
    if op.get_bind().execute(sa.text("select count(*) from audit_event where seq is null")).scalar():
        raise RuntimeError("entries appended since 0016 have no chain position: a downgrade would lose them")
    for table in APPEND_ONLY_TABLES:
        op.execute(f"drop trigger if exists {table}_no_update on {table}")
    op.execute("drop function if exists audit_log_append_only()")
    for table in ("audit_checkpoint", "audit_node", "audit_leaf", "audit_pending"):
        op.drop_table(table)
    op.alter_column("audit_event", "hash", nullable=False)
    op.alter_column("audit_event", "seq", nullable=False)
