"""What each organisation offers (the service directory, "Vägvisaren"): registered, described and taken
out of the directory by the organisation's own admin (or a regional admin); its waiting time confirmed by
its own system too (every update confirms the time)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.registry import OrganisationDirectory, Service, ServiceRepository
from hub.db.tables import Organisation
from hub.db.uow import UnitOfWork
from hub.domain.errors import Conflict, FieldError, InvalidInput, NotFound
from hub.domain.vocabulary import InterventionLevelsDoc, Vocabulary
from hub.runtime import Runtime
from hub.services.codes import unknown_codes
from hub.services.context import Actor, utcnow
from hub.services.registry.access import SLUG, audit_change, require_manager


@dataclass(frozen=True)
class ServiceView:
    """A service with its organisation; ``confirmed`` is false when the waiting time was never confirmed
    or not within the configured maximum age."""

    service: Service
    organisation: Organisation
    confirmed: bool


@dataclass(frozen=True)
class ServiceDraft:
    name: str
    description: str = ""
    intervention_level: str | None = None
    trappan_step: int | None = None
    age_min: int = 0
    age_max: int = 18
    referral_kinds: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    municipality_codes: tuple[str, ...] = ()
    active: bool = True


def is_confirmed(confirmed_at: datetime | None, *, now: datetime, max_age_days: int) -> bool:
    return confirmed_at is not None and confirmed_at >= now - timedelta(days=max_age_days)


def service_errors(draft: ServiceDraft, vocabulary: Vocabulary) -> list[FieldError]:
    """What is wrong with a service description against the shared vocabulary (empty: nothing)."""
    errors: list[FieldError] = []
    if draft.age_min > draft.age_max:
        errors.append(FieldError("/age_min", "must not be greater than age_max"))
    levels = vocabulary.get("intervention-levels")
    assert isinstance(levels, InterventionLevelsDoc)
    level = draft.intervention_level
    if level is not None and level not in {p.code for p in levels.prevention_levels}:
        errors.append(FieldError("/intervention_level", f"{level!r} is not a prevention level", "unknown-code"))
    elif level is not None and draft.trappan_step is not None:
        fits = {r.step: r.levels for r in levels.relations}.get(f"step-{draft.trappan_step}", ())
        if level not in fits:
            msg = f"TABB-Trappan step {draft.trappan_step} goes with {', '.join(fits)}"
            errors.append(FieldError("/intervention_level", msg, "inconsistent"))
    errors += unknown_codes(vocabulary, "referral-kind", draft.referral_kinds, "/referral_kinds")
    indicators = vocabulary.indicator_codes()
    errors += [
        FieldError(f"/dimensions/{i}", f"{code!r} is not a wellbeing indicator", "unknown-code")
        for i, code in enumerate(draft.dimensions)
        if code not in indicators
    ]
    return errors


def _service_values(draft: ServiceDraft) -> dict[str, Any]:
    values = asdict(draft)
    for name in ("referral_kinds", "dimensions", "municipality_codes"):
        values[name] = list(dict.fromkeys(values[name]))  # keep order, drop repeats
    return values


def _max_age(runtime: Runtime) -> int:
    return runtime.settings.service_confirmation_max_age_days


async def get_service(session: AsyncSession, *, service_id: str, max_age_days: int) -> ServiceView:
    found = await ServiceRepository(session).get(service_id)
    if found is None:
        raise NotFound(f"No service {service_id!r} in the registry.")
    service, org = found
    return ServiceView(
        service, org, is_confirmed(service.waiting_confirmed_at, now=utcnow(), max_age_days=max_age_days)
    )


async def _locked(session: AsyncSession, service_id: str) -> Service:
    found = await ServiceRepository(session).get(service_id, for_update=True)
    if found is None:
        raise NotFound(f"No service {service_id!r} in the registry.")
    return found[0]


async def create_service(
    *, actor: Actor, organisation_id: str, draft: ServiceDraft, service_id: str | None = None, runtime: Runtime
) -> ServiceView:
    """Register a service, audited, one commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        await require_manager(uow.session, actor, organisation_id)
        if await OrganisationDirectory(uow.session).fresh(organisation_id) is None:
            raise InvalidInput("No such organisation.", errors=[FieldError("/organisation_id", "not in the registry")])
        errors = service_errors(draft, runtime.vocabulary)
        if service_id is not None and not SLUG.match(service_id):
            errors.append(FieldError("/id", "lower-case letters, digits and '-', 2 to 64 characters"))
        if errors:
            raise InvalidInput("The service cannot be registered as given.", errors=errors)
        sid = service_id or f"svc-{uuid.uuid4().hex[:12]}"
        values = _service_values(draft)
        service = Service(id=sid, organisation_id=organisation_id, created_at=actor.now, updated_at=actor.now, **values)
        if not await ServiceRepository(uow.session).add(service):
            raise Conflict(f"A service with id {sid!r} already exists.")
        await audit_change(uow.session, actor, "service-created", "Service", sid, organisation_id, **values)
        view = await get_service(uow.session, service_id=sid, max_age_days=_max_age(runtime))
        await uow.commit()
    return view


async def update_service(*, actor: Actor, service_id: str, draft: ServiceDraft, runtime: Runtime) -> ServiceView:
    """Replace a service's description (everything but its waiting time, which has its own use case),
    audited, one commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        found = await _locked(uow.session, service_id)
        await require_manager(uow.session, actor, found.organisation_id)
        errors = service_errors(draft, runtime.vocabulary)
        if errors:
            raise InvalidInput("The service cannot be changed as given.", errors=errors)
        values = _service_values(draft)
        old = found.model_dump(include=set(values))
        changed = {k: v for k, v in values.items() if old.get(k) != v}
        await ServiceRepository(uow.session).update(service_id, now=actor.now, **values)
        await audit_change(
            uow.session, actor, "service-updated", "Service", service_id, found.organisation_id, **changed
        )
        view = await get_service(uow.session, service_id=service_id, max_age_days=_max_age(runtime))
        await uow.commit()
    return view


async def deactivate_service(*, actor: Actor, service_id: str, runtime: Runtime) -> None:
    """Take a service out of the directory, audited, one commit. It stays (referrals may name it) but is
    no longer found."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        found = await _locked(uow.session, service_id)
        await require_manager(uow.session, actor, found.organisation_id)
        if found.active:
            await ServiceRepository(uow.session).update(service_id, now=actor.now, active=False)
            await audit_change(uow.session, actor, "service-deactivated", "Service", service_id, found.organisation_id)
        await uow.commit()


async def confirm_waiting_time(*, actor: Actor, service_id: str, waiting_days: int, runtime: Runtime) -> ServiceView:
    """Set the current waiting time and mark it confirmed now (the organisation's system keeps it
    current), audited, one commit."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        service = await _locked(uow.session, service_id)
        await require_manager(uow.session, actor, service.organisation_id, system=True)
        await ServiceRepository(uow.session).update(
            service_id, now=actor.now, waiting_days=waiting_days, waiting_confirmed_at=actor.now
        )
        await audit_change(
            uow.session,
            actor,
            "service-waiting-time",
            "Service",
            service_id,
            service.organisation_id,
            waiting_days=waiting_days,
            previous_waiting_days=service.waiting_days,
        )
        view = await get_service(uow.session, service_id=service_id, max_age_days=_max_age(runtime))
        await uow.commit()
    return view
