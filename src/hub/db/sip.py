"""SIP meetings in PostgreSQL: loading a meeting as the domain's aggregate (locked for a change), persisting
what it changed, and the outbox entries of its news. Never commits; holds no rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.referrals.rows import OutboxRow
from hub.db.teams import organisation_cards
from hub.domain.sip import Event, Invitation, Meeting

SIP_INVITATION = "sip-invitation"  # outbox kind: an invitation (or its cancellation) to an invitee's system
SIP_ANSWER = "sip-answer"  # outbox kind: an invitee's answer to the inviter's system

_MEETING = "id, inviter_organisation, times, state, created_at, cancelled_at, cancel_reason"
_SETTING = "duration_minutes, format, language, details, details_key_id, child_pseudonym"
_INVITATION = "id, organisation_id, outcome, decision_id, answer, answered_at, reason, proposed_time"
_EVENT = "id, invitation_id, type, to_organisation, at, answer, reason, proposed_time"


@dataclass(frozen=True)
class Setting:
    """What the meeting holds besides its rules: how long, in which form and language, and the sealed
    details (the child's identity, the purpose, the place), under the child's pseudonym."""

    duration_minutes: int
    format: str
    language: str
    details: bytes
    details_key_id: str
    child_pseudonym: str


@dataclass(frozen=True)
class StoredMeeting:
    meeting: Meeting
    setting: Setting


async def load(session: AsyncSession, meeting_id: uuid.UUID, *, lock: bool = False) -> StoredMeeting | None:
    row = (
        await session.execute(
            text(f"select {_MEETING}, {_SETTING} from sip_meeting where id = :id" + (" for update" if lock else "")),
            {"id": meeting_id},
        )
    ).first()
    if row is None:
        return None
    invitations = await session.execute(
        text(f"select {_INVITATION} from sip_invitation where meeting_id = :id order by organisation_id"),
        {"id": meeting_id},
    )
    meeting = Meeting(
        id=row[0],
        inviter=row[1],
        times=tuple(row[2]),
        state=row[3],
        created_at=row[4],
        cancelled_at=row[5],
        cancel_reason=row[6],
        invitations=[Invitation(*r) for r in invitations.all()],
    )
    return StoredMeeting(meeting, Setting(row[7], row[8], row[9], bytes(row[10]), row[11], row[12]))


async def by_key(session: AsyncSession, inviter: str, key: str) -> tuple[uuid.UUID, str] | None:
    """The meeting ``inviter`` made with ``key``, and its request's hash."""
    row = (
        await session.execute(
            text("select id, request_hash from sip_meeting where inviter_organisation = :o and idempotency_key = :k"),
            {"o": inviter, "k": key},
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def insert(
    session: AsyncSession, meeting: Meeting, setting: Setting, *, idempotency_key: str, request_hash: str
) -> bool:
    """The new meeting's row; False when a concurrent request with the same key got there first."""
    inserted = await session.scalar(
        text(
            f"insert into sip_meeting ({_MEETING}, {_SETTING}, idempotency_key, request_hash) "
            "values (:id, :inviter, :times, :state, :created_at, null, null, :duration, :format, :language, "
            ":details, :key_id, :child, :key, :hash) "
            "on conflict (inviter_organisation, idempotency_key) do nothing returning id"
        ),
        {
            "id": meeting.id,
            "inviter": meeting.inviter,
            "times": list(meeting.times),
            "state": meeting.state,
            "created_at": meeting.created_at,
            "duration": setting.duration_minutes,
            "format": setting.format,
            "language": setting.language,
            "details": setting.details,
            "key_id": setting.details_key_id,
            "child": setting.child_pseudonym,
            "key": idempotency_key,
            "hash": request_hash,
        },
    )
    return inserted is not None


_SAVE_INVITATION = (
    f"insert into sip_invitation (meeting_id, {_INVITATION}) values (:meeting_id, :id, :organisation, :outcome, "
    ":decision_id, :answer, :answered_at, :reason, :proposed_time) on conflict (id) do update set "
    "outcome = excluded.outcome, decision_id = excluded.decision_id, answer = excluded.answer, "
    "answered_at = excluded.answered_at, reason = excluded.reason, "
    "proposed_time = excluded.proposed_time"
)
_SAVE_EVENT = (
    f"insert into sip_event ({_EVENT}) values (:id, :invitation_id, :type, :to_organisation, :at, :answer, "
    ":reason, :proposed_time)"
)


async def save(session: AsyncSession, meeting: Meeting) -> None:
    """Persist what the aggregate changed: its state, the invitations it changed, the events it made."""
    await session.execute(
        text("update sip_meeting set state = :s, cancelled_at = :at, cancel_reason = :r where id = :id"),
        {"s": meeting.state, "at": meeting.cancelled_at, "r": meeting.cancel_reason, "id": meeting.id},
    )
    for invitation in meeting.changed:
        await session.execute(text(_SAVE_INVITATION), {"meeting_id": meeting.id, **invitation.__dict__})
    for event in meeting.events:
        await session.execute(text(_SAVE_EVENT), event.__dict__)


@dataclass(frozen=True)
class EventFacts:
    """What an event's message carries: the event, its meeting as stored, the organisations named."""

    event: Event
    stored: StoredMeeting
    organisations: dict[str, dict[str, Any]]


async def event_facts(session: AsyncSession, event_id: uuid.UUID) -> EventFacts | None:
    row = (
        await session.execute(
            text(
                f"select {', '.join('e.' + c.strip() for c in _EVENT.split(','))}, i.meeting_id "
                "from sip_event e join sip_invitation i on i.id = e.invitation_id where e.id = :id"
            ),
            {"id": event_id},
        )
    ).first()
    if row is None:
        return None
    stored = await load(session, row[8])
    assert stored is not None  # the invitation's foreign key holds the meeting
    named = [stored.meeting.inviter, *(i.organisation for i in stored.meeting.invitations)]
    organisations = await organisation_cards(session, named)
    return EventFacts(Event(*row[:8]), stored, organisations)


def event_entry(event: Event) -> OutboxRow:
    """The outbox entry that tells ``event.to_organisation``'s system of ``event``: one per event, so its
    idempotency key is stable across retries."""
    kind = SIP_ANSWER if event.type == "answered" else SIP_INVITATION
    return OutboxRow(
        id=uuid.uuid4(),
        referral_id=None,
        event_id=None,
        kind=kind,
        recipient_organisation=event.to_organisation,
        idempotency_key=f"{kind}:{event.id}",
        state="queued",
        attempts=0,
        next_attempt_at=event.at,
        lease_until=None,
        last_error=None,
        adapter=None,
        remote_id=None,
        delivered_at=None,
        created_at=event.at,
        updated_at=event.at,
        sip_event_id=event.id,
    )


async def decisions(session: AsyncSession, ids: list[uuid.UUID]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Each sharing decision's basis and kept explanation (reasons, remedies), by id."""
    rows = await session.execute(
        text("select id, legal_basis, explanation from sharing_decision where id = any(:ids)"), {"ids": ids}
    )
    return {str(r[0]): (r[1], dict(r[2])) for r in rows.all()}


async def active_organisations(session: AsyncSession, ids: list[str]) -> set[str]:
    """Those of ``ids`` registered and active (a deactivated organisation is no party to a share)."""
    rows = await session.execute(text("select id from organisation where id = any(:ids) and active"), {"ids": ids})
    return {r[0] for r in rows.all()}
