"""Answers to reports of concern (``concern_answer``, migration 0021) and the receiving social services'
search by child. Codes, ids and times only: no personal data is stored here. Nothing here commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.referrals.rows import ReferralRow


@dataclass(frozen=True)
class AnswerRow:
    referral_id: uuid.UUID
    answer: str
    answered_at: datetime
    answered_by: str
    event_id: uuid.UUID


_ANSWER = "referral_id, answer, answered_at, answered_by, event_id"


async def insert_answer(session: AsyncSession, row: AnswerRow) -> None:
    await session.execute(
        text(
            f"insert into concern_answer ({_ANSWER}) "
            "values (:referral_id, :answer, :answered_at, :answered_by, :event_id)"
        ),
        {name: getattr(row, name) for name in AnswerRow.__dataclass_fields__},
    )


async def answers(session: AsyncSession, referral_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AnswerRow]:
    """The answers given to these referrals, by referral id (an unanswered one is missing)."""
    if not referral_ids:
        return {}
    rows = await session.execute(
        text(f"select {_ANSWER} from concern_answer where referral_id = any(:ids)"), {"ids": list(referral_ids)}
    )
    return {r[0]: AnswerRow(*r) for r in rows.all()}


async def reports_in_municipality(
    session: AsyncSession, *, pseudonyms: Sequence[str], kind: str, municipality: str, limit: int
) -> list[ReferralRow]:
    """Delivered referrals of ``kind`` about the child (under any of its ``pseudonyms``) whose recipient is an
    organisation of ``municipality``, newest first."""
    columns = ", ".join(f"r.{name}" for name in ReferralRow.__dataclass_fields__)
    rows = await session.execute(
        text(
            f"""select {columns} from referral r join organisation o on o.id = r.recipient_organisation
                where r.child_pseudonym = any(:pseudonyms) and r.kind = :kind
                  and o.municipality_code = :municipality and r.delivered_at is not null
                order by r.created_at desc, r.id desc limit :limit"""
        ),
        {"pseudonyms": list(pseudonyms), "kind": kind, "municipality": municipality, "limit": limit},
    )
    return [ReferralRow(*r) for r in rows.all()]


async def municipality_of(session: AsyncSession, organisation_id: str) -> tuple[str | None, str | None]:
    """The organisation's type and municipality (None, None: not in the registry)."""
    row = (
        await session.execute(
            text("select type, municipality_code from organisation where id = :id and active"), {"id": organisation_id}
        )
    ).first()
    return (None, None) if row is None else (row[0], row[1])
