"""Registered organisations: listed and read by any authenticated caller, created, replaced and
(de)activated by a regional admin (a deactivated one's tokens are refused, referral routing skips it).
An organisation may carry its unit's HSA-id (one organisation per HSA-id) and its organisation number."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.registry import OrganisationDirectory
from hub.db.repositories import OrganisationRepository
from hub.db.tables import Organisation
from hub.db.uow import UnitOfWork
from hub.domain.errors import Conflict, FieldError, InvalidInput, NotFound, NotPermitted
from hub.domain.hsa import InvalidHsaId, InvalidOrganisationNumber, parse_hsa_id, parse_organisation_number
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
    hsa_id: str | None = None  # Inera's format (hub.domain.hsa); one organisation per HSA-id
    active: bool = True  # False: its tokens are refused, referral routing skips it (history kept)
    organisation_number: str | None = None  # NNNNNN-NNNN or ten digits; stored as ten digits


async def list_organisations(
    session: AsyncSession,
    *,
    type: str | None,
    municipality_code: str | None,
    cursor: str | None,
    limit: int,
    hsa_id: str | None = None,
) -> Page[Organisation]:
    """A page of organisations by id; ``hsa_id`` finds the one carrying it (a malformed one is a 422)."""
    if hsa_id is not None:
        try:
            parse_hsa_id(hsa_id)
        except InvalidHsaId as exc:
            error = FieldError("hsa_id", exc.message, f"hsa-id-{exc.reason}")
            raise InvalidInput("The HSA-id is not valid.", errors=[error]) from None
    after = decode_cursor(cursor).get("after") if cursor is not None else None
    if cursor is not None and not isinstance(after, str):
        raise bad_cursor()
    rows = await OrganisationDirectory(session).page(
        type=type, municipality_code=municipality_code, after_id=after, limit=limit + 1, hsa_id=hsa_id
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
        await require_regional_admin(uow.session, actor)
        draft, errors, clash = await organisation_problems(
            uow.session, actor=actor, vocabulary=runtime.vocabulary, organisation_id=organisation_id, draft=draft
        )
        if errors:
            raise InvalidInput("The organisation cannot be registered as given.", errors=errors)
        if clash is not None:
            raise clash
        try:
            created = await write_organisation(uow.session, actor=actor, organisation_id=organisation_id, draft=draft)
            await uow.commit()
        except IntegrityError as exc:  # another request registered the HSA-id since the check: still a 409
            if "organisation_hsa_id" not in str(exc.orig):
                raise
            raise _hsa_id_taken("another organisation") from None
        forget_standing(organisation_id)  # honoured at once here; other processes within their cache's TTL
        return await get_registered_organisation(uow.session, organisation_id=organisation_id), created


async def require_regional_admin(session: AsyncSession, actor: Actor) -> None:
    if not await is_regional_admin(session, actor):
        raise NotPermitted("Only an admin of a regional coordination organisation may change organisations.")


async def organisation_problems(
    session: AsyncSession, *, actor: Actor, vocabulary: Vocabulary, organisation_id: str, draft: OrganisationDraft
) -> tuple[OrganisationDraft, list[FieldError], Conflict | None]:
    """The draft as it would be stored (organisation number as ten digits), what is wrong with it, and the
    clash when another organisation carries its HSA-id. Shared by :func:`put_organisation` and the import."""
    draft, errors = checked_identifiers(draft)
    if not SLUG.match(organisation_id):
        errors.append(FieldError("organisation_id", "lower-case letters, digits and '-', 2 to 64 characters"))
    if draft.type not in vocabulary.codes("organisation-types"):
        errors.append(FieldError("/type", f"{draft.type!r} is not an organisation-type code", "unknown-code"))
    if draft.municipality_code is not None and draft.municipality_code[:2] != draft.region_code:
        errors.append(FieldError("/municipality_code", f"not a municipality of region {draft.region_code}"))
    directory = OrganisationDirectory(session)
    parent = draft.parent_id
    if parent is not None and (parent == organisation_id or await directory.fresh(parent) is None):
        errors.append(FieldError("/parent_id", "no such (other) organisation in the registry", "unknown-organisation"))
    if not draft.active and organisation_id == actor.organisation_id:
        errors.append(FieldError("/active", "an organisation cannot deactivate itself (its admins would lose access)"))
    holder = await directory.by_hsa_id(draft.hsa_id) if draft.hsa_id is not None and not errors else None
    clash = _hsa_id_taken(holder.id) if holder is not None and holder.id != organisation_id else None
    return draft, errors, clash


async def write_organisation(
    session: AsyncSession, *, actor: Actor, organisation_id: str, draft: OrganisationDraft
) -> bool:
    """Store a checked draft and audit the change, without committing; True when it was created."""
    created = await OrganisationDirectory(session).lock(organisation_id) is None
    await OrganisationRepository(session).upsert(Organisation(id=organisation_id, **asdict(draft)))
    change = "organisation-created" if created else "organisation-updated"
    await audit_change(session, actor, change, "Organisation", organisation_id, organisation_id, **asdict(draft))
    return created


def checked_identifiers(draft: OrganisationDraft) -> tuple[OrganisationDraft, list[FieldError]]:
    """The draft with its organisation number as ten digits, and what is wrong with its HSA-id and
    organisation number (each error says which part: country code, number, check digit, suffix)."""
    errors: list[FieldError] = []
    if draft.hsa_id is not None:
        try:
            parse_hsa_id(draft.hsa_id)
        except InvalidHsaId as exc:
            errors.append(FieldError("/hsa_id", exc.message, f"hsa-id-{exc.reason}"))
    number = draft.organisation_number
    if number is not None:
        try:
            number = parse_organisation_number(number)
        except InvalidOrganisationNumber as exc:
            errors.append(FieldError("/organisation_number", exc.message, f"organisation-number-{exc.reason}"))
    return replace(draft, organisation_number=number), errors


def _hsa_id_taken(organisation_id: str) -> Conflict:
    return Conflict(
        "Another organisation in the registry carries this HSA-id.",
        errors=[FieldError("/hsa_id", f"already the HSA-id of {organisation_id}", "hsa-id-taken")],
    )
