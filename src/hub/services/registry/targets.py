"""Who receives a referral: the target a sender names (an organisation, a service, or an organisation
type in a municipality) resolved through the registry."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.registry import OrganisationDirectory, Service, ServiceRepository
from hub.db.tables import Organisation
from hub.domain.errors import FieldError, InvalidInput


@dataclass(frozen=True)
class ResolvedTarget:
    """Who receives a referral: the organisation, and the service when the sender named one."""

    organisation: Organisation
    service: Service | None = None


async def resolve_target(
    session: AsyncSession,
    *,
    organisation_id: str | None = None,
    service_id: str | None = None,
    organisation_type: str | None = None,
    municipality_code: str | None = None,
    referral_kind: str | None = None,
) -> ResolvedTarget:
    """Who a referral goes to, named in exactly one way: an organisation; a service (which must be
    active and, when ``referral_kind`` is given, accept it); or an organisation type in a municipality
    (the one unit of that type there, else the county-wide unit of that type; ``referral_kind`` narrows
    several candidates to those with a service accepting it). Anything else is ``InvalidInput`` at
    ``/target``: none or several ways given, nothing found, or more than one candidate."""

    def invalid(message: str) -> InvalidInput:
        detail = f"The referral's target cannot be resolved: {message}."
        return InvalidInput(detail, errors=[FieldError("/target", message)])

    by_type = organisation_type is not None or municipality_code is not None
    if sum([organisation_id is not None, service_id is not None, by_type]) != 1:
        raise invalid("name exactly one of an organisation, a service, or an organisation type and municipality")
    if organisation_id is not None:
        org = await OrganisationDirectory(session).fresh(organisation_id)
        if org is None:
            raise invalid(f"no organisation {organisation_id!r} in the registry")
        if not org.active:
            raise invalid(f"organisation {organisation_id!r} is deactivated in the registry")
        return ResolvedTarget(org)
    if service_id is not None:
        found = await ServiceRepository(session).get(service_id)
        if found is None or not found[0].active:
            raise invalid(f"no active service {service_id!r} in the registry")
        if referral_kind is not None and referral_kind not in found[0].referral_kinds:
            raise invalid(f"service {service_id!r} does not accept {referral_kind!r}")
        return ResolvedTarget(found[1], found[0])
    if organisation_type is None or municipality_code is None:
        raise invalid("an organisation type needs a municipality, and a municipality an organisation type")
    directory = OrganisationDirectory(session)
    candidates = await directory.of_type(organisation_type, municipality_code=municipality_code)
    if not candidates:
        candidates = await directory.of_type(
            organisation_type, municipality_code=None, region_code=municipality_code[:2]
        )
    if len(candidates) > 1 and referral_kind is not None:
        accepting = await ServiceRepository(session).accepting([c.id for c in candidates], referral_kind=referral_kind)
        candidates = [c for c in candidates if c.id in accepting] or candidates
    if not candidates:
        raise invalid(f"no {organisation_type} in municipality {municipality_code} or its county")
    if len(candidates) > 1:
        raise invalid(
            f"{len(candidates)} organisations of type {organisation_type} serve {municipality_code}; name one"
        )
    return ResolvedTarget(candidates[0])
