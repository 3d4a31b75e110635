"""The sticky protected-identity mark per child pseudonym (table ``protected_identity``, migration 0018).

Marks are written in the statement that records the marking message (``hub.db.lawful.MARK_CTE``) and read
with the sharing facts (``hub.db.lawful.FACTS``); here are the receiver's read and the clear."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class ReadFacts:
    """What a receiver's read of a referral needs to apply protection: whether the child is marked, the
    recipient's type and the sending organisation (the marker's contact)."""

    protected: bool
    recipient_type: str | None
    sender: dict[str, Any]


async def read_facts(session: AsyncSession, *, candidates: Sequence[str], sender: str, recipient: str) -> ReadFacts:
    """One round trip, whether or not the child is marked (a read of a protected child is not slower)."""
    row = (
        await session.execute(
            text(
                """select exists(select from protected_identity where child_pseudonym = any(:children)),
                          (select type from organisation where id = :recipient),
                          (select json_build_object('organisation_id', id, 'name', name, 'type', type,
                                                    'municipality_code', municipality_code, 'hsa_id', hsa_id)::text
                           from organisation where id = :sender)"""
            ),
            {"children": list(candidates), "sender": sender, "recipient": recipient},
        )
    ).one()
    return ReadFacts(bool(row[0]), row[1], json.loads(row[2]) if row[2] else {"organisation_id": sender})


async def team_child_protected(session: AsyncSession, team_id: Any) -> bool:
    """Whether the child of a team around the child is marked."""
    return bool(
        await session.scalar(
            text(
                """select exists(select from protected_identity p join team t on t.child_pseudonym = p.child_pseudonym
                                 where t.id = :team)"""
            ),
            {"team": team_id},
        )
    )


async def clear(session: AsyncSession, candidates: Sequence[str]) -> bool:
    """Remove the child's mark (under any of its pseudonyms); whether there was one."""
    result = await session.execute(
        text("delete from protected_identity where child_pseudonym = any(:children) returning child_pseudonym"),
        {"children": list(candidates)},
    )
    return bool(result.all())
