"""Import units into the registry from an HSA-style export (CSV or JSON), idempotently.

Each unit is one row (CSV with a header line) or one object (a JSON array, or ``{"units": [...]}``) with
these keys, named after the HSA catalogue's attributes where HSA has one (docs/operations.md):

========================  =========================================================================
``hsaIdentity``           the unit's HSA-id (required): the key the import matches on
``name``                  the unit's name (required)
``type``                  the hub's ``organisation-types`` code (required: HSA has no such code)
``municipalityCode``      SCB municipality code; empty: a county-wide unit
``countyCode``            SCB county (region) code; empty: the municipality's first two digits
``orgNo``                 the legal entity's organisation number (``NNNNNN-NNNN`` or ten digits)
``id``                    the hub's organisation id; empty: the HSA-id in lower case
``active``                ``true``/``false`` (default ``true``)
========================  =========================================================================

An organisation already carrying the HSA-id is compared field by field: ``unchanged`` when equal,
``updated`` otherwise; else it is ``created`` (or, when an organisation with the id has no HSA-id yet,
``updated`` to carry it). A unit that cannot be stored is ``refused`` with its reasons (the same checks
and wording as ``PUT /v1/registry/organisations/{id}``); the others are stored. Nothing is deactivated
for being absent from the file. Every change is audited as ``admin-change``; the import commits once.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.registry import OrganisationDirectory
from hub.db.uow import UnitOfWork
from hub.domain.errors import FieldError, InvalidInput
from hub.domain.vocabulary import Vocabulary
from hub.runtime import Runtime
from hub.services.context import Actor
from hub.services.organisations import forget_standing
from hub.services.registry.organisations import (
    OrganisationDraft,
    organisation_problems,
    require_regional_admin,
    write_organisation,
)

__all__ = ["ImportReport", "Refusal", "import_units", "read_units"]

COLUMNS = ("hsaIdentity", "name", "type", "municipalityCode", "countyCode", "orgNo", "id", "active")
_COMPARED = ("name", "type", "municipality_code", "region_code", "hsa_id", "organisation_number", "active")


@dataclass(frozen=True)
class Refusal:
    """A unit the import did not store: its position (1 = the first unit), its HSA-id as given when it
    was text, and why (``field: message``)."""

    unit: int
    hsa_id: str | None
    reasons: list[str]


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "refused": [asdict(r) for r in self.refused],
        }


def read_units(text: str, *, fmt: str) -> list[dict[str, Any]]:
    """The units of an export, ``fmt`` ``csv`` or ``json``; a file that is neither is an InvalidInput."""
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        unknown = sorted(set(reader.fieldnames or ()) - set(COLUMNS))
        if reader.fieldnames is None or "hsaIdentity" not in reader.fieldnames or unknown:
            raise InvalidInput(
                "The CSV file's header is not the documented one.",
                errors=[_file_error(f"columns: {', '.join(COLUMNS)}; unknown: {', '.join(unknown) or '-'}")],
            )
        return [dict(row) for row in reader]
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidInput("The file is not JSON.", errors=[_file_error("not JSON")]) from None
    units = data.get("units") if isinstance(data, dict) else data
    if not isinstance(units, list) or not all(isinstance(u, dict) for u in units):
        raise InvalidInput("The JSON has no list of units.", errors=[_file_error("a list of unit objects")])
    return units


def _file_error(message: str) -> FieldError:
    return FieldError("file", message)


def _text(unit: dict[str, Any], key: str) -> str | None:
    value = unit.get(key)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _draft(unit: dict[str, Any]) -> tuple[str | None, OrganisationDraft | None, list[str]]:
    """The hub id and draft a unit asks for, or the reasons it cannot be read."""
    reasons = [f"{key}: unknown column" for key in unit if key not in COLUMNS]
    hsa_id, name, type_ = _text(unit, "hsaIdentity"), _text(unit, "name"), _text(unit, "type")
    reasons += [
        f"{key}: required" for key, value in (("hsaIdentity", hsa_id), ("name", name), ("type", type_)) if not value
    ]
    municipality = _text(unit, "municipalityCode")
    region = _text(unit, "countyCode") or (municipality[:2] if municipality else None)
    if region is None:
        reasons.append("countyCode: required for a county-wide unit (no municipalityCode)")
    active = _text(unit, "active") or "true"
    if active.lower() not in ("true", "false"):
        reasons.append("active: true or false")
    if reasons or hsa_id is None or name is None or type_ is None or region is None:
        return None, None, reasons
    draft = OrganisationDraft(
        name=name,
        type=type_,
        municipality_code=municipality,
        region_code=region,
        hsa_id=hsa_id,
        active=active.lower() == "true",
        organisation_number=_text(unit, "orgNo"),
    )
    return _text(unit, "id") or hsa_id.lower(), draft, []


async def _import_one(
    session: AsyncSession, *, actor: Actor, vocabulary: Vocabulary, unit: dict[str, Any], report: ImportReport
) -> Refusal | None:
    hsa_text = unit.get("hsaIdentity") if isinstance(unit.get("hsaIdentity"), str) else None
    org_id, draft, reasons = _draft(unit)
    if org_id is None or draft is None:
        return Refusal(0, hsa_text, reasons)
    directory = OrganisationDirectory(session)
    holder = await directory.by_hsa_id(draft.hsa_id) if draft.hsa_id else None
    if holder is not None:
        org_id = holder.id  # the HSA-id is the key: a unit keeps the hub id it was registered with
    existing = holder or await directory.fresh(org_id)
    if existing is not None:
        draft = OrganisationDraft(**{**asdict(draft), "parent_id": existing.parent_id})
    draft, errors, clash = await organisation_problems(
        session, actor=actor, vocabulary=vocabulary, organisation_id=org_id, draft=draft
    )
    if existing is not None and existing.hsa_id not in (None, draft.hsa_id):
        errors.append(_conflict_reason(org_id))
    found = [f"{e.pointer.lstrip('/')}: {e.message}" for e in errors]
    if clash is not None:
        found += [f"{e.pointer.lstrip('/')}: {e.message}" for e in clash.errors]
    if found:
        return Refusal(0, hsa_text, found)
    if existing is not None and all(getattr(existing, k) == getattr(draft, k) for k in _COMPARED):
        report.unchanged.append(org_id)
        return None
    created = await write_organisation(session, actor=actor, organisation_id=org_id, draft=draft)
    (report.created if created else report.updated).append(org_id)
    return None


def _conflict_reason(org_id: str) -> FieldError:
    return FieldError("/id", f"{org_id} is registered with another HSA-id", "hsa-id-taken")


async def import_units(
    *, actor: Actor, runtime: Runtime, units: list[dict[str, Any]], dry_run: bool = False
) -> ImportReport:
    """Store the units (a regional admin's act) in one unit of work; report what was created, updated,
    unchanged, refused. ``dry_run``: report, store nothing. A unit repeating an HSA-id earlier in the file
    is refused."""
    async with UnitOfWork.of(runtime.sessions) as uow:
        report = await _import(uow.session, actor=actor, vocabulary=runtime.vocabulary, units=units)
        if dry_run:
            return report  # the unit of work ends uncommitted: nothing stored
        await uow.commit()
    for org_id in report.updated:
        forget_standing(org_id)  # an organisation (de)activated by the file is honoured at once here
    return report


async def _import(
    session: AsyncSession, *, actor: Actor, vocabulary: Vocabulary, units: list[dict[str, Any]]
) -> ImportReport:
    await require_regional_admin(session, actor)
    report = ImportReport()
    seen: set[str] = set()
    for position, unit in enumerate(units, start=1):
        key = unit.get("hsaIdentity")
        if isinstance(key, str) and key.strip() in seen:
            report.refused.append(Refusal(position, key, ["hsaIdentity: repeats an earlier unit of the file"]))
            continue
        if isinstance(key, str):
            seen.add(key.strip())
        refusal = await _import_one(session, actor=actor, vocabulary=vocabulary, unit=unit, report=report)
        if refusal is not None:
            report.refused.append(Refusal(position, refusal.hsa_id, refusal.reasons))
    return report
