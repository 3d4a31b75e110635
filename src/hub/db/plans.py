"""The child's plan in PostgreSQL: versions (content sealed by the caller), each member's share and reviews;
the outbox entries that carry them; the retention purge. Never commits; holds no rule."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.referrals.rows import OutboxRow
from hub.domain.plans import PlanVersion, Review, Share, Withheld

PLAN_VERSION, PLAN_NOTICE, PLAN_REVIEW = "plan-version", "plan-notice", "plan-review"  # outbox kinds

_VERSION = "id, number, author_organisation, schema_version, sections, created_at, purged_at"


def _version(row: Any) -> PlanVersion:
    return PlanVersion(row[0], row[1], row[2], row[3], tuple(row[4]), row[5], row[6])


async def versions(session: AsyncSession, team_id: uuid.UUID) -> list[PlanVersion]:
    result = await session.execute(
        text(f"select {_VERSION} from plan_version where team_id = :t order by number"), {"t": team_id}
    )
    return [_version(r) for r in result.all()]


async def add_version(
    session: AsyncSession, team_id: uuid.UUID, version: PlanVersion, sealed: tuple[bytes, str]
) -> None:
    await session.execute(
        text(
            "insert into plan_version (id, team_id, number, author_organisation, schema_version, sections, "
            "content, content_key_id, created_at) values (:id, :t, :n, :a, :s, cast(:sections as jsonb), "
            ":c, :k, :at)"
        ),
        {
            "id": version.id,
            "t": team_id,
            "n": version.number,
            "a": version.author,
            "s": version.schema_version,
            "sections": json.dumps(list(version.sections)),
            "c": sealed[0],
            "k": sealed[1],
            "at": version.created_at,
        },
    )


async def content(session: AsyncSession, version_id: uuid.UUID) -> tuple[bytes, str] | None:
    """The sealed content of a version, or None once purged."""
    row = (
        await session.execute(
            text("select content, content_key_id from plan_version where id = :id"), {"id": version_id}
        )
    ).first()
    return None if row is None or row[0] is None else (bytes(row[0]), row[1])


@dataclass(frozen=True)
class NewShare:
    """A member's share to record: what it gets, the decision behind it, its basis."""

    id: uuid.UUID
    share: Share
    decision_id: uuid.UUID
    basis: str | None


async def add_shares(session: AsyncSession, version_id: uuid.UUID, shares: list[NewShare], at: datetime) -> None:
    """Record every member's share of a version in one round trip."""
    if not shares:
        return
    params = [
        {
            "id": s.id,
            "v": version_id,
            "o": s.share.organisation,
            "k": s.share.kind,
            "s": json.dumps(list(s.share.sections)),
            "w": json.dumps([w.as_json() for w in s.share.withheld]),
            "d": s.decision_id,
            "b": s.basis,
            "at": at,
        }
        for s in shares
    ]
    await session.execute(
        text(
            "insert into plan_share (id, plan_version_id, organisation_id, kind, sections, withheld, decision_id, "
            "legal_basis, created_at) values (:id, :v, :o, :k, cast(:s as jsonb), cast(:w as jsonb), :d, :b, :at)"
        ),
        params[0] if len(params) == 1 else params,
    )


async def active_types(session: AsyncSession, ids: list[str]) -> dict[str, str]:
    """Each active organisation's type (a deactivated one is no party to a share: absent)."""
    result = await session.execute(
        text("select id, type from organisation where id = any(:ids) and active"), {"ids": ids}
    )
    return {r[0]: r[1] for r in result.all()}


@dataclass(frozen=True)
class StoredShare:
    """A member's share of a version as recorded: what it got, what was withheld, on which decision."""

    id: uuid.UUID
    version_id: uuid.UUID
    organisation: str
    kind: str
    sections: tuple[str, ...]
    withheld: tuple[Withheld, ...]
    decision_id: uuid.UUID
    legal_basis: str | None


_SHARE = "id, plan_version_id, organisation_id, kind, sections, withheld, decision_id, legal_basis"


def _share(row: Any) -> StoredShare:
    withheld = tuple(Withheld(w["section"], w["data_category"], w["reason"]) for w in row[5])
    return StoredShare(row[0], row[1], row[2], row[3], tuple(row[4]), withheld, row[6], row[7])


async def share(session: AsyncSession, share_id: uuid.UUID) -> StoredShare | None:
    row = (await session.execute(text(f"select {_SHARE} from plan_share where id = :id"), {"id": share_id})).first()
    return None if row is None else _share(row)


async def share_of(session: AsyncSession, version_id: uuid.UUID, organisation: str) -> StoredShare | None:
    row = (
        await session.execute(
            text(f"select {_SHARE} from plan_share where plan_version_id = :v and organisation_id = :o"),
            {"v": version_id, "o": organisation},
        )
    ).first()
    return None if row is None else _share(row)


@dataclass(frozen=True)
class VersionFacts:
    """A version with its team and child, for building a message or a read."""

    version: PlanVersion
    team_id: uuid.UUID
    child_pseudonym: str


async def version_facts(session: AsyncSession, version_id: uuid.UUID) -> VersionFacts | None:
    row = (
        await session.execute(
            text(
                f"select {', '.join('v.' + c.strip() for c in _VERSION.split(','))}, t.id, t.child_pseudonym "
                "from plan_version v join team t on t.id = v.team_id where v.id = :id"
            ),
            {"id": version_id},
        )
    ).first()
    return None if row is None else VersionFacts(_version(row[:7]), row[7], row[8])


async def add_review(session: AsyncSession, review: Review, sealed: tuple[bytes, str]) -> None:
    await session.execute(
        text(
            "insert into plan_review (id, plan_version_id, organisation_id, answers, answers_key_id, created_at) "
            "values (:id, :v, :o, :a, :k, :at)"
        ),
        {
            "id": review.id,
            "v": review.version_id,
            "o": review.organisation,
            "a": sealed[0],
            "k": sealed[1],
            "at": review.created_at,
        },
    )


@dataclass(frozen=True)
class StoredReview:
    id: uuid.UUID
    version_id: uuid.UUID
    organisation: str
    answers: tuple[bytes, str] | None  # sealed; None once purged
    created_at: datetime


async def review(session: AsyncSession, review_id: uuid.UUID) -> StoredReview | None:
    row = (
        await session.execute(
            text(
                "select id, plan_version_id, organisation_id, answers, answers_key_id, created_at "
                "from plan_review where id = :id"
            ),
            {"id": review_id},
        )
    ).first()
    if row is None:
        return None
    sealed = None if row[3] is None else (bytes(row[3]), row[4])
    return StoredReview(row[0], row[1], row[2], sealed, row[5])


def entry(kind: str, recipient: str, key: str, at: datetime, **link: uuid.UUID) -> OutboxRow:
    """An outbox entry for a plan's share (``plan_share_id``) or review (``plan_review_id``); one per share
    or review, so its idempotency key is stable across retries."""
    return OutboxRow.queued(kind, recipient, key, at, **link)


async def purge(session: AsyncSession, *, before: datetime, at: datetime) -> int:
    """Drop the content of versions (and their reviews' answers) written before ``before``: only metadata
    remains. Returns how many versions were purged."""
    result = await session.execute(
        text(
            "update plan_version set content = null, content_key_id = null, purged_at = :at "
            "where content is not null and created_at < :before"
        ),
        {"before": before, "at": at},
    )
    await session.execute(
        text(
            "update plan_review set answers = null, answers_key_id = null, purged_at = :at "
            "where answers is not null and created_at < :before"
        ),
        {"before": before, "at": at},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
