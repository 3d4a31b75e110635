"""``/v1/registry``: organisations, their delivery endpoints and the service directory ("Vägvisaren")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import Caller, require
from hub.api.deps import RuntimeDep, Session, actor_for
from hub.api.routing import Router
from hub.domain.principal import Principal, Role
from hub.services import registry as svc

router = Router(prefix="/v1/registry", tags=["registry"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
AdminOrSystem = Annotated[Principal, Depends(require(Role.ADMIN, Role.SYSTEM))]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200)]

_STRICT = ConfigDict(extra="forbid")
_CODES = r"^[0-9]{4}$"
_SLUG = r"^[a-z0-9][a-z0-9-]{1,63}$"


class OrganisationRead(BaseModel):
    id: str
    name: str
    type: str = Field(description="organisation-types code")
    municipality_code: str | None = Field(description="SCB municipality code; null for a county-wide unit")
    region_code: str
    parent_id: str | None
    hsa_id: str | None = Field(description="The unit's HSA-id (Inera's catalogue), e.g. SE2321000164-E1")
    organisation_number: str | None = Field(description="The legal entity's organisation number, ten digits")
    active: bool = Field(description="False: deactivated; its tokens are refused and referral routing skips it")


class OrganisationPage(BaseModel):
    items: list[OrganisationRead]
    next_cursor: str | None


class OrganisationPut(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200)
    type: str = Field(description="organisation-types code", examples=["elevhalsa"])
    municipality_code: str | None = Field(
        pattern=_CODES, description="SCB code; null for a unit serving the whole county (region)", examples=["1884"]
    )
    region_code: str = Field(pattern=r"^[0-9]{2}$", examples=["18"])
    parent_id: str | None = None
    hsa_id: str | None = Field(
        default=None,
        max_length=64,
        description="HSA-id: SE, the catalogue owner's organisation number (check digit), '-', a suffix of "
        "A-Z/a-z/0-9; unique in the registry",
        examples=["SE2321000164-E1"],
    )
    organisation_number: str | None = Field(
        default=None, max_length=11, description="NNNNNN-NNNN or ten digits (check digit); stored as ten digits"
    )
    active: bool = Field(
        default=True,
        description="false deactivates the organisation: its tokens are refused (at once on this hub process, "
        "within HUB_ORGANISATION_CACHE_SECONDS on others); routing by type and the service directory skip it; "
        "its history is kept",
    )


class EndpointPut(BaseModel):
    model_config = _STRICT
    adapter: str = Field(min_length=1, max_length=64, examples=["webhook"], description="An installed adapter")
    config: dict[str, Any] = Field(
        description="The adapter's config. Secrets only by reference: a key ending in `_ref` names a secret "
        "the hub resolves at delivery time; a secret value is refused.",
        examples=[{"url": "https://journal.example.se/hub", "secret_ref": "nora-webhook"}],
    )


class EndpointRead(BaseModel):
    id: str
    organisation_id: str
    adapter: str
    config: dict[str, Any] = Field(description="As stored: references to secrets, never their values")
    active: bool
    created_at: datetime
    updated_at: datetime


class ServiceOrganisation(BaseModel):
    id: str
    name: str
    type: str
    municipality_code: str | None


class ServiceBody(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200, examples=["Samtalsstöd barn och unga"])
    description: str = Field(default="", max_length=4000)
    intervention_level: str | None = Field(
        default=None, description="Prevention level: universal, selective, indicated"
    )
    trappan_step: int | None = Field(default=None, ge=0, le=3, description="TABB-Trappan step")
    age_min: int = Field(default=0, ge=0, le=25)
    age_max: int = Field(default=18, ge=0, le=25)
    referral_kinds: list[str] = Field(default=[], max_length=20, description="referral-kinds codes it accepts")
    dimensions: list[str] = Field(default=[], max_length=8, description="Wellbeing indicators it addresses")
    municipality_codes: list[Annotated[str, Field(pattern=_CODES)]] = Field(
        default=[],
        max_length=300,
        description="Municipalities served; empty: the organisation's own municipality (a county-wide unit: "
        "its whole county)",
    )
    active: bool = True

    def draft(self) -> svc.ServiceDraft:
        return svc.ServiceDraft(
            name=self.name,
            description=self.description,
            intervention_level=self.intervention_level,
            trappan_step=self.trappan_step,
            age_min=self.age_min,
            age_max=self.age_max,
            referral_kinds=tuple(self.referral_kinds),
            dimensions=tuple(self.dimensions),
            municipality_codes=tuple(self.municipality_codes),
            active=self.active,
        )


class ServiceCreate(ServiceBody):
    id: str | None = Field(default=None, pattern=_SLUG, description="Chosen by the caller, or made by the hub")
    organisation_id: str | None = Field(default=None, description="The caller's own organisation if omitted")


class ServiceRead(BaseModel):
    id: str
    organisation: ServiceOrganisation
    name: str
    description: str
    intervention_level: str | None
    trappan_step: int | None
    age_min: int
    age_max: int
    referral_kinds: list[str]
    dimensions: list[str]
    municipality_codes: list[str]
    waiting_days: int | None = Field(description="Current waiting time in days, as the organisation last said")
    waiting_confirmed_at: datetime | None
    confirmed: bool = Field(
        description="False when the waiting time was never confirmed or is older than the hub's maximum age"
    )
    active: bool


class ServicePage(BaseModel):
    items: list[ServiceRead]
    next_cursor: str | None


class StalePage(ServicePage):
    max_age_days: int = Field(description="A waiting time confirmed longer ago than this needs confirming")


class WaitingTimeIn(BaseModel):
    model_config = _STRICT
    waiting_days: int = Field(ge=0, le=3650)


def _org(org: svc.Organisation) -> OrganisationRead:
    return OrganisationRead.model_validate(org, from_attributes=True)


def _endpoint(e: svc.Endpoint) -> EndpointRead:
    return EndpointRead(
        id=str(e.id),
        organisation_id=e.organisation_id,
        adapter=e.adapter,
        config=e.config,
        active=e.active,
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def _service(view: svc.ServiceView) -> ServiceRead:
    s, o = view.service, view.organisation
    return ServiceRead(
        **s.model_dump(exclude={"organisation_id", "created_at", "updated_at"}),
        organisation=ServiceOrganisation(id=o.id, name=o.name, type=o.type, municipality_code=o.municipality_code),
        confirmed=view.confirmed,
    )


def _max_age(runtime: RuntimeDep) -> int:
    return runtime.settings.service_confirmation_max_age_days


# ------------------------------------------------------------------------------------- organisations
@router.get("/organisations", response_model=OrganisationPage, summary="Registered organisations, by id")
async def list_organisations(
    principal: Caller,
    session: Session,
    type: Annotated[str | None, Query(description="organisation-types code")] = None,
    municipality: Annotated[str | None, Query(pattern=_CODES, description="SCB municipality code")] = None,
    hsa_id: Annotated[str | None, Query(description="The organisation carrying this HSA-id (at most one)")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> OrganisationPage:
    page = await svc.list_organisations(
        session, type=type, municipality_code=municipality, cursor=cursor, limit=limit, hsa_id=hsa_id
    )
    return OrganisationPage(items=[_org(o) for o in page.items], next_cursor=page.next_cursor)


@router.get("/organisations/{organisation_id}", response_model=OrganisationRead, summary="One organisation")
async def get_organisation(organisation_id: str, principal: Caller, session: Session) -> OrganisationRead:
    return _org(await svc.get_registered_organisation(session, organisation_id=organisation_id))


@router.put(
    "/organisations/{organisation_id}",
    response_model=OrganisationRead,
    responses={201: {"model": OrganisationRead, "description": "Created"}},
    summary="Create or replace an organisation (admins of a regional coordination organisation)",
)
async def put_organisation(
    organisation_id: str,
    body: OrganisationPut,
    principal: Admin,
    runtime: RuntimeDep,
    response: Response,
) -> OrganisationRead:
    org, created = await svc.put_organisation(
        actor=actor_for(principal),
        organisation_id=organisation_id,
        draft=svc.OrganisationDraft(**body.model_dump()),
        runtime=runtime,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _org(org)


@router.get(
    "/organisations/{organisation_id}/endpoint",
    response_model=EndpointRead,
    summary="The organisation's active endpoint (its own admin, or a regional admin)",
)
async def get_endpoint(organisation_id: str, principal: Admin, session: Session) -> EndpointRead:
    return _endpoint(await svc.get_endpoint(session, actor=actor_for(principal), organisation_id=organisation_id))


@router.put(
    "/organisations/{organisation_id}/endpoint",
    response_model=EndpointRead,
    summary="Set the organisation's endpoint: adapter and config, validated against the adapter",
)
async def put_endpoint(organisation_id: str, body: EndpointPut, principal: Admin, runtime: RuntimeDep) -> EndpointRead:
    endpoint = await svc.put_endpoint(
        actor=actor_for(principal),
        organisation_id=organisation_id,
        adapter=body.adapter,
        config=body.config,
        runtime=runtime,
    )
    return _endpoint(endpoint)


# ------------------------------------------------------------------------------------------ services
@router.get("/services", response_model=ServicePage, summary="Search the service directory: who can help?")
async def search_services(
    principal: Caller,
    session: Session,
    runtime: RuntimeDep,
    age: Annotated[int | None, Query(ge=0, le=25, description="The child's age in years")] = None,
    municipality: Annotated[str | None, Query(pattern=_CODES, description="Where the child lives (SCB)")] = None,
    referral_kind: Annotated[str | None, Query(description="referral-kinds code the service must accept")] = None,
    dimension: Annotated[list[str], Query(description="Wellbeing indicator(s); any of them matches")] = [],  # noqa: B006
    trappan_step: Annotated[int | None, Query(ge=0, le=3)] = None,
    organisation_type: Annotated[str | None, Query(description="organisation-types code")] = None,
    organisation: Annotated[str | None, Query(description="Only this organisation's services")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Text in the service's or organisation's name")] = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> ServicePage:
    """Active services, ranked: those that serve the municipality specifically before county-wide ones,
    a confirmed waiting time before an unconfirmed one, then the shorter wait (unknown last)."""
    query = svc.ServiceFilter(
        age=age,
        municipality_code=municipality,
        referral_kind=referral_kind,
        dimensions=tuple(dimension),
        trappan_step=trappan_step,
        organisation_type=organisation_type,
        organisation_id=organisation,
        text=q.strip() if q and q.strip() else None,
    )
    page = await svc.search_services(
        session,
        vocabulary=runtime.vocabulary,
        query=query,
        cursor=cursor,
        limit=limit,
        max_age_days=_max_age(runtime),
    )
    return ServicePage(items=[_service(v) for v in page.items], next_cursor=page.next_cursor)


@router.post(
    "/services",
    status_code=status.HTTP_201_CREATED,
    response_model=ServiceRead,
    summary="Register a service (the organisation's admin, or a regional admin)",
)
async def create_service(body: ServiceCreate, principal: Admin, runtime: RuntimeDep) -> ServiceRead:
    view = await svc.create_service(
        actor=actor_for(principal),
        organisation_id=body.organisation_id or principal.organisation_id,
        service_id=body.id,
        draft=body.draft(),
        runtime=runtime,
    )
    return _service(view)


@router.get("/services/{service_id}", response_model=ServiceRead, summary="One service (inactive ones too)")
async def get_service(service_id: str, principal: Caller, session: Session, runtime: RuntimeDep) -> ServiceRead:
    return _service(await svc.get_service(session, service_id=service_id, max_age_days=_max_age(runtime)))


@router.put(
    "/services/{service_id}",
    response_model=ServiceRead,
    summary="Replace a service's description (its waiting time has its own endpoint)",
)
async def update_service(service_id: str, body: ServiceBody, principal: Admin, runtime: RuntimeDep) -> ServiceRead:
    view = await svc.update_service(
        actor=actor_for(principal), service_id=service_id, draft=body.draft(), runtime=runtime
    )
    return _service(view)


@router.delete(
    "/services/{service_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Take a service out of the directory (it is kept, inactive, for the referrals that name it)",
)
async def deactivate_service(service_id: str, principal: Admin, runtime: RuntimeDep) -> Response:
    await svc.deactivate_service(actor=actor_for(principal), service_id=service_id, runtime=runtime)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/services/{service_id}/waiting-time",
    response_model=ServiceRead,
    summary="Report the current waiting time; confirms it as of now (the organisation's system or admin)",
)
async def confirm_waiting_time(
    service_id: str, body: WaitingTimeIn, principal: AdminOrSystem, runtime: RuntimeDep
) -> ServiceRead:
    view = await svc.confirm_waiting_time(
        actor=actor_for(principal), service_id=service_id, waiting_days=body.waiting_days, runtime=runtime
    )
    return _service(view)


@router.get(
    "/stale-services",
    response_model=StalePage,
    summary="The caller's services whose waiting time needs confirming (never, or too long ago)",
)
async def stale_services(
    principal: AdminOrSystem,
    session: Session,
    runtime: RuntimeDep,
    organisation: Annotated[str | None, Query(description="Regional admins: one organisation (default: all)")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> StalePage:
    max_age = _max_age(runtime)
    page = await svc.stale_services(
        session,
        actor=actor_for(principal),
        organisation_id=organisation,
        cursor=cursor,
        limit=limit,
        max_age_days=max_age,
    )
    return StalePage(items=[_service(v) for v in page.items], next_cursor=page.next_cursor, max_age_days=max_age)
