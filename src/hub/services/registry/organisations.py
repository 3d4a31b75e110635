"""Registered organisations: listed and read by any authenticated caller, created, replaced and
(de)activated by a regional admin (a deactivated one's tokens are refused, referral routing skips it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.registry import OrganisationDirectory
from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation
from hub.db.uow import UnitOfWork
from hub.domain.errors import FieldError, InvalidInput, NotFound, NotPermitted
from hub.domain.vocabulary import Vocabulary
from hub.runtime import Runtime
from hub.services.context import Actor
from hub.services.organisations import forget_standing
from hub.services.registry.access import SLUG, audit_change, is_regional_admin
from hub.services.registry.paging import Page, bad_cursor, decode_cursor, encode_cursor


@dataclass(frozen=True)
class OrganisationDraft:
    name: str
    type: str
    municipality_code: str | None  # None: a county-wide unit of the region
    region_code: str
    parent_id: str | None = None
    hsa_id: str | None = None
    active: bool = True  # False: its tokens are refused, referral routing skips it (history kept)


async def list_organisations(
    session: AsyncSession, *, type: str | None, municipality_code: str | None, cursor: str | None, limit: int
) -> Page[Organisation]:
    after = decode_cursor(cursor).get("after") if cursor is not None else None
    if cursor is not None and not isinstance(after, str):
        raise bad_cursor()
    rows = await OrganisationDirectory(session).page(
        type=type, municipality_code=municipality_code, after_id=after, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor({"after": rows[-1].id}) if more else None)


async def get_registered_organisation(session: AsyncSession, *, organisation_id: str) -> Organisation:
    org = await OrganisationDirectory(session).fresh(organisation_id)
    if org is None:
        raise NotFound(f"No organisation {organisation_id!r} in the registry.")
    return org


async def put_organisation(
    *, actor: Actor, organisation_id: str, draft: OrganisationDraft, runtime: Runtime
) -> tuple[Organisation, bool]:
    """Create or replace an organisation (regional admins), audited, one commit. Returns it and whether
    it was created."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        if not await is_regional_admin(uow.session, actor):
            raise NotPermitted("Only an admin of a regional coordination organisation may change organisations.")
        await _check(uow.session, actor, organisation_id, draft, runtime.vocabulary)
        directory = OrganisationDirectory(uow.session)
        created = await directory.lock(organisation_id) is None
        await OrganisationRepository(uow.session).upsert(Organisation(id=organisation_id, **asdict(draft)))
        change = "organisation-created" if created else "organisation-updated"
        await audit_change(
            uow.session, actor, change, "Organisation", organisation_id, organisation_id, **asdict(draft)
        )
        await uow.commit()
        forget_standing(organisation_id)  # honoured at once here; other processes within their cache's TTL
        return await get_registered_organisation(uow.session, organisation_id=organisation_id), created


async def _check(
    session: AsyncSession, actor: Actor, organisation_id: str, draft: OrganisationDraft, vocabulary: Vocabulary
) -> None:
    errors: list[FieldError] = []
    if not SLUG.match(organisation_id):
        errors.append(FieldError("organisation_id", "lower-case letters, digits and '-', 2 to 64 characters"))
    if draft.type not in vocabulary.codes("organisation-types"):
        errors.append(FieldError("/type", f"{draft.type!r} is not an organisation-type code", "unknown-code"))
    if draft.municipality_code is not None and draft.municipality_code[:2] != draft.region_code:
        errors.append(FieldError("/municipality_code", f"not a municipality of region {draft.region_code}"))
    parent = draft.parent_id
    if parent is not None and (parent == organisation_id or await OrganisationDirectory(session).fresh(parent) is None):
        errors.append(FieldError("/parent_id", "no such (other) organisation in the registry", "unknown-organisation"))
    if not draft.active and organisation_id == actor.organisation_id:
        errors.append(FieldError("/active", "an organisation cannot deactivate itself (its admins would lose access)"))
    if errors:
        raise InvalidInput("The organisation cannot be registered as given.", errors=errors)
