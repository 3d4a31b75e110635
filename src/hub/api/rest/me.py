"""``GET /v1/me``: how the hub sees the caller's token. Integrators test their tokens with it."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hub.api.auth import Caller
from hub.api.deps import Session
from hub.services.organisations import get_organisation

router = APIRouter(prefix="/v1", tags=["auth"])


class OrganisationRead(BaseModel):
    id: str
    name: str
    type: str = Field(description="Code from the organisation-types vocabulary")
    municipality_code: str | None
    region_code: str


class MeRead(BaseModel):
    subject: str
    organisation_id: str
    roles: list[str]
    registered: bool = Field(description="Whether the token's organisation is in the hub's registry")
    organisation: OrganisationRead | None


@router.get("/me", response_model=MeRead, summary="The caller's organisation and roles as the hub sees them")
async def me(principal: Caller, session: Session) -> MeRead:
    org = await get_organisation(session, organisation_id=principal.organisation_id)
    return MeRead(
        subject=principal.subject,
        organisation_id=principal.organisation_id,
        roles=sorted(r.value for r in principal.roles),
        registered=org is not None,
        organisation=OrganisationRead.model_validate(org, from_attributes=True) if org else None,
    )
