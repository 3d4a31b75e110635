"""Referrals and the team: an organisation joins the team around the child when it accepts a referral
about the child, and that membership ends when the referral reaches a final status. The referral's
aggregate decides (``Decided.team``: ``hub.domain.referrals.TeamEffect``); the team's applies it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import teams as db
from hub.domain.referrals import TeamEffect
from hub.domain.vocabulary import Vocabulary
from hub.services.teams.changes import stages


async def follow_referral(
    session: AsyncSession,
    effect: TeamEffect,
    *,
    child_pseudonyms: list[str],
    referral_id: uuid.UUID,
    now: datetime,
    vocabulary: Vocabulary,
) -> None:
    """Apply a referral's effect on the child's team in the referral change's transaction. Accepting a
    referral about a child with no team yet begins one (the team exists once anyone works with the
    child; it shows no named person until one is named). The caller commits (with the referral's change,
    which its audit entry records). ``child_pseudonyms``: the child's under every key, the current key's
    first."""
    known = stages(vocabulary)
    stored = await db.team_for_child(session, child_pseudonyms, known, lock=True)
    if stored is None:
        if not effect.join:
            return
        await db.create_team(session, child_pseudonyms[0], now)
        stored = await db.team_for_child(session, child_pseudonyms, known, lock=True)
        assert stored is not None
    team = stored.team
    if effect.join:
        team.join(effect.organisation, reason=effect.reason, now=now, referral_id=referral_id)
    else:
        team.leave(effect.organisation, reason=effect.reason, now=now, referral_id=referral_id)
    if team.changed:
        await db.save(session, team, now, sealed_children={})
