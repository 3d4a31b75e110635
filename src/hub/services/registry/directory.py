"""Finding services: the directory's ranked search (any authenticated caller) and the services whose
waiting time needs confirming (the organisation's admin or system, or a regional admin)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.registry import RankKey, ServiceFilter, ServiceRepository, stale_position
from hub.domain.errors import FieldError, InvalidInput, NotPermitted
from hub.domain.principal import Role
from hub.domain.vocabulary import Vocabulary
from hub.services.context import Actor, utcnow
from hub.services.registry.access import is_regional_admin, require_manager
from hub.services.registry.paging import Page, bad_cursor, decode_cursor, encode_cursor
from hub.services.registry.services import ServiceView


async def search_services(
    session: AsyncSession,
    *,
    vocabulary: Vocabulary,
    query: ServiceFilter,
    cursor: str | None,
    limit: int,
    max_age_days: int,
) -> Page[ServiceView]:
    """Active services that match, ranked as ``ServiceRepository.search`` describes."""
    checks = [
        ("referral_kind", [query.referral_kind] if query.referral_kind else [], vocabulary.codes("referral-kinds")),
        (
            "organisation_type",
            [query.organisation_type] if query.organisation_type else [],
            vocabulary.codes("organisation-types"),
        ),
        ("dimension", list(query.dimensions), vocabulary.indicator_codes()),
    ]
    errors = [
        FieldError(param, f"{code!r} is not a known {param.replace('_', ' ')} code", "unknown-code")
        for param, codes, known in checks
        for code in codes
        if code not in known
    ]
    if query.municipality_code is not None and not re.fullmatch(r"[0-9]{4}", query.municipality_code):
        errors.append(FieldError("municipality", "an SCB municipality code: four digits"))
    if query.trappan_step is not None and not 0 <= query.trappan_step <= 3:
        errors.append(FieldError("trappan_step", "a TABB-Trappan step: 0 to 3"))
    if errors:
        raise InvalidInput("The search is not valid.", errors=errors)
    now = utcnow()
    state = decode_cursor(cursor) if cursor is not None else None
    try:
        # The confirmation cut-off travels in the cursor, so rows keep their rank from page to page.
        since = datetime.fromisoformat(state["since"]) if state is not None else now - timedelta(days=max_age_days)
        after: RankKey | None = None
        if state is not None:
            local, confirmed, wait, name, sid = state["after"]
            after = (int(local), int(confirmed), int(wait), str(name), str(sid))
    except (KeyError, TypeError, ValueError):
        raise bad_cursor() from None
    rows = await ServiceRepository(session).search(query, confirmed_since=since, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [ServiceView(s, o, key[1] == 0) for s, o, key in rows]
    next_cursor = encode_cursor({"since": since.isoformat(), "after": list(rows[-1][2])}) if more else None
    return Page(items, next_cursor)


async def stale_services(
    session: AsyncSession,
    *,
    actor: Actor,
    organisation_id: str | None,
    cursor: str | None,
    limit: int,
    max_age_days: int,
) -> Page[ServiceView]:
    """Services whose waiting time needs confirming: the caller's own (a regional admin: any one
    organisation's, or all when ``organisation_id`` is None)."""
    if not actor.principal.has_any(Role.ADMIN, Role.SYSTEM):
        raise NotPermitted("This needs one of the roles: admin, system.")
    if organisation_id is None and not await is_regional_admin(session, actor):
        organisation_id = actor.organisation_id
    elif organisation_id is not None:
        await require_manager(session, actor, organisation_id, system=True)
    now = utcnow()
    state = decode_cursor(cursor) if cursor is not None else None
    try:
        before = datetime.fromisoformat(state["before"]) if state is not None else now - timedelta(days=max_age_days)
        after = (datetime.fromisoformat(state["after"][0]), str(state["after"][1])) if state is not None else None
    except (KeyError, TypeError, ValueError, IndexError):
        raise bad_cursor() from None
    rows = await ServiceRepository(session).stale(
        organisation_id=organisation_id, confirmed_before=before, after=after, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        at, sid = stale_position(rows[-1][0])
        next_cursor = encode_cursor({"before": before.isoformat(), "after": [at.isoformat(), sid]})
    return Page([ServiceView(s, o, False) for s, o in rows], next_cursor)
