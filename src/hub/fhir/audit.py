"""Audit-trail entries as FHIR R4 ``AuditEvent`` resources, and the parsing of its ``date`` search values.

Pure functions; no I/O, no web. An entry renders from its canonical (hashed) content, so the resource
says exactly what the chain covers and nothing more: the child appears only as the keyed pseudonym.

Mapping (see docs/fhir.md): ``type`` is the hub's action code; ``action`` is C/R/U/D/E from
:data:`ACTION_CODES`; ``outcome`` is stored as the R4 code already ("0" success, "4" minor failure:
a refusal); the acting organisation is the requesting ``agent`` and the counterpart organisation (a
share's recipient) a second, non-requesting one; ``purposeOfEvent`` carries the legal basis and the
referral purpose; ``entity`` the child (pseudonym), the object acted on with the entry's details, the
decision and the request id; the hash-chain position is the ``audit-chain`` extension.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from hub.domain.audit import AuditAction
from hub.domain.hsa import HSA_ID_SYSTEM, hsa_id_of_subject
from hub.domain.vocabulary import CANONICAL_BASE

AUDIT_ACTION_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/audit-action"
ROLE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/role"
LEGAL_BASIS_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/legal-bases"
REFERRAL_KIND_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/referral-kinds"
ORGANISATION_SYSTEM = f"{CANONICAL_BASE}/sid/organisation"
CHILD_PSEUDONYM_SYSTEM = f"{CANONICAL_BASE}/sid/child-pseudonym"
CHAIN_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/audit-chain"
OUTCOME_SYSTEM = "http://hl7.org/fhir/audit-event-outcome"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_DICOM = "http://dicom.nema.org/resources/ontology/DCM"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"

ACTION_CODES: dict[AuditAction, str] = {
    AuditAction.SHARING_DECISION: "E",  # the decision engine runs; nothing is created for the caller
    AuditAction.CONSENT_RECORDED: "C",
    AuditAction.CONSENT_WITHDRAWN: "U",  # a consent is never deleted, only marked withdrawn
    AuditAction.CONSENT_READ: "R",
    AuditAction.CONSENT_LISTED: "E",  # R4: a query/search is "E"
    AuditAction.CONSENT_REQUESTED: "C",
    AuditAction.CONSENT_REQUEST_ANSWERED: "U",  # an answer is added to the request
    AuditAction.CONSENT_REQUEST_READ: "R",
    AuditAction.NECESSITY_ASSESSMENT_RECORDED: "C",
    AuditAction.AUDIT_READ: "E",  # every audit read is a search, also a read by id
    AuditAction.ADMIN_CHANGE: "U",
    AuditAction.REFERRAL_SENT: "C",
    AuditAction.REFERRAL_READ: "R",
    AuditAction.REFERRAL_STATUS_CHANGED: "U",
    AuditAction.REFERRAL_DELIVERED: "E",
    AuditAction.FLOWS_READ: "E",  # an aggregate query over referral flows
    AuditAction.TEAM_READ: "R",  # a member reads the team around a child (basis: its membership)
    AuditAction.TEAM_CHANGED: "U",
    AuditAction.PROTECTED_IDENTITY_CLEARED: "D",  # the child's mark is removed
    AuditAction.PLAN_VERSION_SENT: "C",  # the responsible organisation sends a version (each share: a decision)
    AuditAction.PLAN_READ: "R",  # a member reads a version, the sections its share holds
    AuditAction.PLAN_REVIEWED: "C",
    AuditAction.CONCERN_ANSWERED: "C",  # the answer is a record of its own on the report
    AuditAction.CONCERN_REPORTS_SEARCHED: "E",
    AuditAction.SIP_INVITATION_SENT: "C",  # an invitation to a SIP meeting shared with an invitee
    AuditAction.SIP_READ: "R",
    AuditAction.SIP_CHANGED: "U",
}
"""AuditEvent.action for each of the hub's actions."""

OUTCOME_CODES = ("0", "4", "8", "12")
"""The R4 outcome codes. The hub records 0 (success) and 4 (minor failure: a refusal, e.g. a share no
legal basis allows); 8 and 12 are valid in a search and match nothing."""


class AuditEntryLike(Protocol):
    """What ``hub.services.audit_log.read_audit`` returns per entry."""

    @property
    def id(self) -> int: ...
    @property
    def partition(self) -> str: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def hash(self) -> str | None: ...
    @property
    def content(self) -> Mapping[str, Any]: ...


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    return coding | {"display": display} if display else coding


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _organisation(org: str) -> dict[str, Any]:
    return {"identifier": {"system": ORGANISATION_SYSTEM, "value": org}}


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _detail(key: str, value: Any) -> dict[str, Any]:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return {"type": key, "valueString": text}


def _entities(c: Mapping[str, Any]) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if c.get("child_pseudonym"):
        entities.append(
            {
                "what": {"identifier": {"system": CHILD_PSEUDONYM_SYSTEM, "value": c["child_pseudonym"]}},
                "type": _coding(_ENTITY_TYPE, "1", "Person"),
                "role": _coding(_OBJECT_ROLE, "1", "Patient"),
            }
        )
    kind, object_id = c.get("entity_type"), c.get("entity_id")
    details = c.get("details") or {}
    if kind or object_id or details:
        thing: dict[str, Any] = {"type": _coding(_ENTITY_TYPE, "2", "System Object")}
        if kind and object_id:
            thing["what"] = {"identifier": {"system": f"{CANONICAL_BASE}/sid/{_kebab(kind)}", "value": object_id}}
        elif kind:
            thing["name"] = kind  # e.g. a search over a child's consents: no single object
        if details:
            thing["detail"] = [_detail(k, details[k]) for k in sorted(details)]
        entities.append(thing)
    entities.extend(_cited_basis(details.get("basis")))
    decision = c.get("decision_id")
    if decision and (kind, object_id) != ("SharingDecision", decision):
        entities.append(
            {
                "what": {"identifier": {"system": f"{CANONICAL_BASE}/sid/sharing-decision", "value": decision}},
                "type": _coding(_ENTITY_TYPE, "2", "System Object"),
            }
        )
    if c.get("request_id"):
        entities.append(
            {
                "what": {"identifier": {"value": c["request_id"]}},
                "type": _coding(_BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
            }
        )
    return entities


_CITED = {"consent_id": "consent", "necessity_assessment_id": "necessity-assessment"}


def _cited_basis(basis: Any) -> list[dict[str, Any]]:
    """The consent or necessity assessment a sharing decision rests on, as an entity of its own (a consent
    of another organisation is not cited by id, so it has none; the basis stays in the object's detail)."""
    if not isinstance(basis, Mapping):
        return []
    cited = [
        {
            "what": {"identifier": {"system": f"{CANONICAL_BASE}/sid/{kind}", "value": basis[key]}},
            "type": _coding(_ENTITY_TYPE, "2", "System Object"),
            "description": f"The legal basis of the decision ({basis.get('legal_basis')})",
        }
        for key, kind in _CITED.items()
        if basis.get(key)
    ]
    return cited + _cited_statute(basis.get("statute"))


def _cited_statute(statute: Any) -> list[dict[str, Any]]:
    """The statute the decision cited on its day (``hub.domain.sharing.citation``), as an entity: its id in
    the legal-bases vocabulary version it was read from, and the citation in Swedish and English."""
    if not isinstance(statute, Mapping):
        return []
    entity: dict[str, Any] = {
        "type": _coding(_ENTITY_TYPE, "2", "System Object"),
        "name": statute.get("sv"),
        "description": statute.get("en"),
        "detail": [
            _detail(key, statute[key])
            for key in ("vocabulary_version", "valid_from", "valid_until", "provision_verified", "provision_source")
            if statute.get(key) is not None
        ],
    }
    if statute.get("statute_id"):
        entity["what"] = {"identifier": {"system": f"{LEGAL_BASIS_SYSTEM}/statute", "value": statute["statute_id"]}}
    return [entity]


def audit_event(entry: AuditEntryLike) -> dict[str, Any]:
    """One audit entry as an R4 ``AuditEvent`` (``id`` is the entry's id)."""
    c = entry.content
    action = AuditAction(c["action"])
    purposes = _purposes(c)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(entry.id),
        "extension": [_chain_extension(entry)],
        "type": _coding(AUDIT_ACTION_SYSTEM, action.value, action.value.replace("-", " ").capitalize()),
        "action": ACTION_CODES[action],
        "recorded": c["occurred_at"],
        "outcome": c["outcome"],
    }
    if c["outcome"] == "4":
        resource["outcomeDesc"] = "Refused"
    if purposes:
        resource["purposeOfEvent"] = purposes
    resource["agent"] = _agents(c)
    resource["source"] = {
        "observer": {"display": "hub"},
        "type": [_coding(_SOURCE_TYPE, "4", "Application Server")],
    }
    entities = _entities(c)
    if entities:
        resource["entity"] = entities
    return resource


def _chain_extension(entry: AuditEntryLike) -> dict[str, Any]:
    """The entry's place in the audit log (docs/audit.md): its partition, and its leaf index and leaf hash
    once sealed."""
    sealed = (
        []
        if entry.seq is None
        else [
            {"url": "seq", "valueUnsignedInt": entry.seq},
            {"url": "hash", "valueString": entry.hash},
        ]
    )
    return {"url": CHAIN_EXTENSION, "extension": [{"url": "partition", "valueString": entry.partition}, *sealed]}


def _agents(c: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Who acted (the requestor organisation), the counterpart organisation, and the person by HSA-id."""
    counterpart = c.get("counterpart_organisation")
    requestor: dict[str, Any] = {"type": _concept(_DICOM, "110153", "Source Role ID")} if counterpart else {}
    if c.get("actor_roles"):
        requestor["role"] = [_concept(ROLE_SYSTEM, role) for role in c["actor_roles"]]
    requestor |= {"who": _organisation(c["actor_organisation"]), "altId": c["actor_subject"], "requestor": True}
    agents = [requestor]
    if counterpart:
        agents.append(
            {
                "type": _concept(_DICOM, "110152", "Destination Role ID"),
                "who": _organisation(counterpart),
                "requestor": False,
            }
        )
    professional = hsa_id_of_subject(c.get("actor_subject"))
    if professional is not None:  # the person who acted, by HSA-id (HL7 Sweden's system)
        agents.append(
            {
                "who": {"type": "Practitioner", "identifier": {"system": HSA_ID_SYSTEM, "value": professional}},
                "requestor": True,
            }
        )
    return agents


def _purposes(c: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The legal basis (in the vocabulary version the decision cited) and the referral kind."""
    purposes = []
    if c.get("legal_basis"):
        basis = _concept(LEGAL_BASIS_SYSTEM, c["legal_basis"])
        statute = ((c.get("details") or {}).get("basis") or {}).get("statute")
        if isinstance(statute, Mapping) and statute.get("vocabulary_version"):
            basis["coding"][0]["version"] = statute["vocabulary_version"]  # the version the decision cited
        purposes.append(basis)
    if c.get("purpose"):
        purposes.append(_concept(REFERRAL_KIND_SYSTEM, c["purpose"]))
    return purposes


def capability_resource() -> dict[str, Any]:
    """The CapabilityStatement ``rest.resource`` entry for AuditEvent (auditors; read and search)."""
    return {
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "documentation": (
            "The audit trail, for callers with the auditor role (bearer token): an organisation's auditor "
            "sees entries its organisation acted in or was the counterpart of; the regional coordination's "
            "auditor sees all. Reading is itself audited. Newest first; _count (1-200, default 50) sets the page "
            "size and the Bundle's next link continues. An unsupported search parameter is a 400 "
            "OperationOutcome unless the request says Prefer: handling=lenient (then it is ignored and left out "
            "of the self link)."
        ),
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "searchParam": [
            {
                "name": "_id",
                "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
                "type": "token",
                "documentation": "An entry's id",
            },
            {"name": "_count", "type": "number", "documentation": "Page size, 1-200 (default 50)"},
            {"name": "date", "type": "date", "documentation": "eq, ge, gt, le, lt; repeat for a range"},
            {
                "name": "agent",
                "type": "reference",
                "documentation": (
                    "An organisation that acted or was the counterpart: its id, Organization/<id>, or "
                    f"agent:identifier={ORGANISATION_SYSTEM}|<id>"
                ),
            },
            {"name": "type", "type": "token", "documentation": f"The hub's action: {AUDIT_ACTION_SYSTEM}"},
            {"name": "outcome", "type": "token", "documentation": "0 success, 4 refused"},
        ],
    }


def declare_audit_event(statement: Mapping[str, Any]) -> dict[str, Any]:
    """``statement`` (the terminology CapabilityStatement) with AuditEvent and its security declared."""
    body: dict[str, Any] = json.loads(json.dumps(statement))
    rest = body["rest"][0]
    rest["resource"].append(capability_resource())
    rest["security"] = {
        "description": (
            "The terminology (CodeSystem, ValueSet, ConceptMap) is public. AuditEvent needs a bearer token "
            "(JWT) carrying the auditor role."
        )
    }
    return body


# ------------------------------------------------------------------------------------ date searches
_DATE = re.compile(
    r"(?P<prefix>eq|ne|gt|ge|lt|le|sa|eb|ap)?"
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d{1,6})?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)


def _add_month(start: datetime, months: int) -> datetime:
    month = start.month - 1 + months
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)


def _range(m: re.Match[str]) -> tuple[datetime, datetime]:
    """The value's implicit range [start, end) at its precision. Dates without a zone are UTC."""
    if m["hour"] is not None and m["tz"] is None:
        raise ValueError("a date with a time needs a time zone (Z or ±hh:mm)")
    text = m.group(0)[len(m["prefix"] or "") :]
    if m["month"] is None:
        start = datetime(int(m["year"]), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    if m["day"] is None:
        start = datetime(int(m["year"]), int(m["month"]), 1, tzinfo=UTC)
        return start, _add_month(start, 1)
    if m["hour"] is None:
        start = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    start = datetime.fromisoformat(text)
    if m["second"] is None:
        step = timedelta(minutes=1)
    elif m["fraction"] is None:
        step = timedelta(seconds=1)
    else:
        step = timedelta(microseconds=10 ** (7 - len(m["fraction"])))
    return start, start + step


def date_bounds(values: Iterable[str]) -> tuple[datetime | None, datetime | None]:
    """``(since, until)`` — ``since`` inclusive, ``until`` exclusive — from R4 ``date`` search values.

    Prefixes eq (default), ge, gt, le, lt; repeated values all apply (a range). Raises ValueError.
    """
    since: datetime | None = None
    until: datetime | None = None
    for raw in values:
        m = _DATE.fullmatch(raw.strip().replace(" ", "+"))  # an unencoded "+" in a query arrives as " "
        if m is None:
            raise ValueError(f"{raw!r} is not a FHIR date or dateTime (e.g. ge2026-01-01 or lt2026-03-01T12:00Z)")
        prefix = m["prefix"] or "eq"
        if prefix not in ("eq", "gt", "ge", "lt", "le"):
            raise ValueError(f"the prefix {prefix!r} is not supported; use eq, ge, gt, le or lt")
        try:
            start, end = _range(m)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"{raw!r}: {exc}") from None
        low = {"eq": start, "ge": start, "gt": end}.get(prefix)
        high = {"eq": end, "le": end, "lt": start}.get(prefix)
        if low is not None:
            since = low if since is None else max(since, low)
        if high is not None:
            until = high if until is None else min(until, high)
    return since, until
