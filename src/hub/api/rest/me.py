"""``GET /v1/me``: how the hub sees the caller's token. Integrators test their tokens with it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from hub.api.auth import Caller
from hub.api.deps import Session
from hub.api.routing import Router
from hub.services.organisations import get_organisation, organisation_standing

router = Router(prefix="/v1", tags=["auth"])


class OrganisationRead(BaseModel):
    id: str
    name: str
    type: str = Field(description="Code from the organisation-types vocabulary")
    municipality_code: str | None
    region_code: str
    active: bool
    coordinating: bool = Field(
        description="Whether its type is a coordinating one: only then may its tokens carry the role coordinator"
    )


class MeRead(BaseModel):
    subject: str
    organisation_id: str
    roles: list[str]
    registered: bool = Field(
        description="Always true: a token whose organisation is not in the hub's registry is refused (401)"
    )
    organisation: OrganisationRead | None


@router.get("/me", response_model=MeRead, summary="The caller's organisation and roles as the hub sees them")
async def me(principal: Caller, session: Session) -> MeRead:
    org = await get_organisation(session, organisation_id=principal.organisation_id)
    standing = await organisation_standing(session, organisation_id=principal.organisation_id)
    organisation = None
    if org is not None and standing is not None:  # gone only if removed since the token was checked
        organisation = OrganisationRead(
            id=org.id,
            name=org.name,
            type=org.type,
            municipality_code=org.municipality_code,
            region_code=org.region_code,
            active=standing.active,
            coordinating=standing.coordinating,
        )
    return MeRead(
        subject=principal.subject,
        organisation_id=principal.organisation_id,
        roles=sorted(r.value for r in principal.roles),
        registered=organisation is not None,
        organisation=organisation,
    )
