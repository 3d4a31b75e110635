"""FHIR R4: the shared vocabulary (CodeSystem, ValueSet, ConceptMap, ``$translate``; public) and the
audit trail as AuditEvent (auditors only, through the same service as ``/v1/audit``).

Read-only; rendering lives in ``hub.fhir``. Errors stay RFC 9457 ``application/problem+json`` (the
project's one error format), not OperationOutcome: see docs/fhir.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from hub import fhir
from hub.api.auth import require
from hub.api.deps import RuntimeDep, Session, VocabularyDep, actor_for
from hub.api.language import negotiate
from hub.api.problems import PROBLEM_JSON
from hub.api.rest.vocabulary import conditional_response
from hub.domain.errors import FieldError, InvalidInput, NotFound
from hub.domain.principal import Principal, Role
from hub.domain.vocabulary import (
    CANONICAL_BASE,
    CodeSystemBase,
    UnknownCode,
    VariantDoc,
    Vocabulary,
)
from hub.fhir import audit as fhir_audit
from hub.fhir import search as fhir_search
from hub.services import audit_log

router = APIRouter(prefix="/fhir/r4", tags=["fhir"])

FHIR_JSON = "application/fhir+json"
LATEST_CACHE = "public, max-age=300"
VERSION_CACHE = "public, max-age=31536000, immutable"
RESOURCE_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")
# ValueSet expansions need a timestamp; this process expands once, when it starts (part of the ETag).
_EXPANDED_AT = datetime.now(UTC).replace(microsecond=0)

AcceptLanguage = Annotated[
    str | None, Header(description="`sv` (default) or `en`: the language of displays and titles")
]
PreferHeader = Annotated[
    str | None, Header(description="`handling=strict`: an unsupported search parameter is a 400; default lenient")
]
_FHIR_OK: dict[int | str, dict[str, Any]] = {
    200: {"content": {FHIR_JSON: {}}},
    304: {"description": "Not modified"},
}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"content": {PROBLEM_JSON: {}}},
    422: {"content": {PROBLEM_JSON: {}}},
}


class FHIRResponse(JSONResponse):
    media_type = FHIR_JSON


def _base_url(request: Request, runtime: RuntimeDep) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def _etag(*parts: str) -> str:
    return '"' + hashlib.sha256("|".join(parts).encode()).hexdigest()[:40] + '"'


def _respond(request: Request, body: dict[str, Any], etag: str, cache: str, lang: str) -> Response:
    response = conditional_response(request, etag, body, cache, lang)
    if response.status_code == 200:
        response.headers["content-type"] = FHIR_JSON
    return response


# ------------------------------------------------------------------------------------- the resources
def _published(vocab: Vocabulary, rtype: str) -> list[tuple[str, str]]:
    """Every published (name, version) that renders as ``rtype``, in index order."""
    wanted = VariantDoc if rtype == "ConceptMap" else CodeSystemBase
    return [(e.name, e.version) for e in vocab.index() if isinstance(vocab.get(e.name, e.version), wanted)]


def _document(vocab: Vocabulary, rtype: str, rid: str, version: str | None) -> CodeSystemBase:
    """The document behind ``rtype/rid`` (latest version when None); NotFound if it is no such resource."""
    doc = vocab.get(rid, version)
    wanted = VariantDoc if rtype == "ConceptMap" else CodeSystemBase
    if not isinstance(doc, wanted):
        raise NotFound(f"there is no {rtype} with id {rid!r}", errors=[FieldError("id", "unknown id")])
    return doc


def _render(vocab: Vocabulary, rtype: str, doc: CodeSystemBase, lang: str, *, expand: bool) -> dict[str, Any]:
    if rtype == "CodeSystem":
        return fhir.code_system(doc, lang)
    if rtype == "ValueSet":
        return fhir.value_set(doc, lang, expanded_at=_EXPANDED_AT if expand else None)
    assert isinstance(doc, VariantDoc)
    target = vocab.get(doc.map.target, doc.map.target_version)
    assert isinstance(target, CodeSystemBase)
    return fhir.concept_map(doc, target, lang)


def _checksum(vocab: Vocabulary, rtype: str, doc: CodeSystemBase) -> str:
    checksum = vocab.checksum(doc.name, doc.version)
    if isinstance(doc, VariantDoc) and rtype == "ConceptMap":
        checksum += vocab.checksum(doc.map.target, doc.map.target_version)
    if rtype == "ValueSet":
        checksum += _EXPANDED_AT.isoformat()
    return checksum


def _search_handler(rtype: str) -> Callable[..., Any]:
    async def search(
        request: Request,
        vocab: VocabularyDep,
        runtime: RuntimeDep,
        accept_language: AcceptLanguage = None,
        prefer: PreferHeader = None,
    ) -> Response:
        lang = negotiate(accept_language)
        try:
            wanted = fhir_search.parse_search(
                request.query_params.multi_items(), strict=fhir_search.strict_handling(prefer)
            )
        except fhir_search.UnsupportedParameters as exc:
            return _not_supported(exc)
        except fhir_search.SearchParameterError as exc:
            raise _invalid(exc.param, str(exc)) from None
        bundle = _terminology_bundle(vocab, rtype, wanted, lang, _base_url(request, runtime))
        digest = json.dumps(bundle, sort_keys=True, ensure_ascii=False)
        response = _respond(request, bundle, _etag(digest, lang), LATEST_CACHE, lang)
        response.headers["Vary"] = "Accept-Language, Prefer"  # strict handling turns a 200 into a 400
        return response

    search.__doc__ = (
        f"Search {rtype} resources: `_id`, `url` (`url|version` pins one), `version`, `name`, `status`, "
        "`_count` (page size, `next` link), `_summary` (`true`, `text`, `data`, `count`, `false`). Without "
        "criteria, every published version; `_id` alone finds the latest version, like a read. Other "
        "parameters are ignored and left out of the `self` link, or a 400 OperationOutcome with "
        "`Prefer: handling=strict`."
    )
    return search


def _not_supported(exc: fhir_search.UnsupportedParameters) -> Response:
    return FHIRResponse(fhir_search.operation_outcome(exc.names), status_code=400, headers=_NO_STORE)


def _terminology_bundle(
    vocab: Vocabulary, rtype: str, wanted: fhir_search.TerminologySearch, lang: str, base: str
) -> dict[str, Any]:
    found = []
    for rid, ver in _published(vocab, rtype):
        doc = _document(vocab, rtype, rid, ver)
        resource = _render(vocab, rtype, doc, lang, expand=False)
        if fhir_search.matches(resource, wanted):
            found.append(resource)
    if fhir_search.names_ids(wanted) and not fhir_search.pins_version(wanted):
        # A resource id names its latest version (as a read does), not every version published under it.
        found = [r for r in found if r["version"] == _document(vocab, rtype, r["id"], None).version]
    total = len(found)
    count = 0 if wanted.summary == "count" else wanted.count
    page = found[wanted.offset : None if count is None else wanted.offset + count]
    bundle = fhir.searchset_bundle([fhir_search.summarised(r, wanted.summary) for r in page], base, self_url=None)
    bundle["total"] = total
    bundle["link"] = fhir_search.paged_links(f"{base}{router.prefix}/{rtype}", wanted, total)
    if count == 0:
        del bundle["entry"]
    return {k: bundle[k] for k in ("resourceType", "type", "total", "link", "entry") if k in bundle}


IdPath = Annotated[str, Path(description="The id: the vocabulary's name, e.g. `wellbeing-wheel`")]


def _read_handlers(rtype: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def respond(request: Request, vocab: Vocabulary, id: str, vid: str | None, accept_language: str | None) -> Response:
        lang = negotiate(accept_language)
        doc = _document(vocab, rtype, id, vid)
        body = _render(vocab, rtype, doc, lang, expand=True)
        etag = _etag(rtype, _checksum(vocab, rtype, doc), lang)
        return _respond(request, body, etag, LATEST_CACHE if vid is None else VERSION_CACHE, lang)

    async def read(
        request: Request, vocab: VocabularyDep, id: IdPath, accept_language: AcceptLanguage = None
    ) -> Response:
        return respond(request, vocab, id, None, accept_language)

    async def vread(
        request: Request,
        vocab: VocabularyDep,
        id: IdPath,
        vid: Annotated[str, Path(description="A published version, e.g. `1.0.0`")],
        accept_language: AcceptLanguage = None,
    ) -> Response:
        return respond(request, vocab, id, vid, accept_language)

    read.__doc__ = f"The latest published version of one {rtype}."
    vread.__doc__ = f"One published version of a {rtype}; it never changes."
    return read, vread


# --------------------------------------------------------------------------------------- $translate
def _invalid(pointer: str, message: str) -> InvalidInput:
    return InvalidInput(message, errors=[FieldError(pointer, message)])


def _translate(vocab: Vocabulary, params: dict[str, Any], map_id: str | None, lang: str) -> dict[str, Any]:
    """Resolve the ConceptMap and direction from R4 ``$translate`` parameters and translate one code."""
    reverse = bool(params.get("reverse") or False)
    url: str | None = params.get("url")
    map_version: str | None = params.get("conceptMapVersion")
    system: str | None = params.get("system")
    version: str | None = params.get("version")
    code: str | None = params.get("code")
    if not code:
        raise _invalid("code", "the code to translate is required")
    if url is not None and "|" in url:
        url, _, pinned = url.partition("|")
        map_version = map_version or pinned
    name: str | None = map_id
    if url is not None:
        prefix = f"{CANONICAL_BASE}/ConceptMap/"
        if not url.startswith(prefix) or (map_id is not None and url != prefix + map_id):
            raise _invalid("url", f"{url} is not the url of {'this' if map_id else 'a'} ConceptMap of the hub")
        name = url.removeprefix(prefix)
    elif name is None:
        side = params.get("targetsystem") if reverse else system
        if not side:
            raise _invalid("url", "name the ConceptMap: its url, its id in the path, or the variant's system")
        name = side
    if map_id is not None:
        _document(vocab, "ConceptMap", map_id, None)  # an unknown id in the path is a 404
    variant = vocab.variant(name, map_version or (None if reverse else version))
    spec = variant.map
    source_url = f"{CANONICAL_BASE}/CodeSystem/{spec.target}" if reverse else variant.url
    if system is not None and system != source_url:
        raise _invalid("system", f"this ConceptMap translates codes of {source_url}, not {system}")
    if reverse and version is not None and version != spec.target_version:
        raise _invalid("version", f"this ConceptMap maps {spec.target} {spec.target_version}, not {version}")
    try:
        translation = vocab.translate(system=variant.name, codes=[code], reverse=reverse, version=variant.version)
    except UnknownCode as exc:
        raise UnknownCode(exc.detail, field="code", codes=exc.codes) from exc
    return fhir.translate_parameters(translation, lang)


_VALUE_KEYS = ("valueUri", "valueCanonical", "valueString", "valueCode", "valueBoolean", "valueCoding")


def _parameters(body: bytes) -> dict[str, Any]:
    """The ``$translate`` inputs from a FHIR ``Parameters`` body (``coding`` fills system/version/code)."""
    try:
        data = json.loads(body or b"null")
    except ValueError as exc:
        raise _invalid("/", "the body is not JSON; send a FHIR Parameters resource") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "Parameters":
        raise _invalid("/resourceType", "the body must be a FHIR Parameters resource")
    entries = data.get("parameter", [])
    if not isinstance(entries, list):
        raise _invalid("/parameter", "parameter must be a list")
    params: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        values = [k for k in _VALUE_KEYS if isinstance(entry, dict) and k in entry]
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or len(values) != 1:
            raise _invalid(f"/parameter/{i}", "each parameter needs a name and exactly one supported value[x]")
        params[entry["name"]] = entry[values[0]]
    coding = params.pop("coding", None)
    if isinstance(coding, dict):
        for key in ("system", "version", "code"):
            if key in coding:
                params.setdefault(key, coding[key])
    for key, value in params.items():
        wanted = bool if key == "reverse" else str
        if not isinstance(value, wanted):
            raise _invalid(f"/parameter/{key}", f"{key} must be a {wanted.__name__}")
    return params


def _translate_response(body: dict[str, Any], lang: str) -> Response:
    return FHIRResponse(body, headers={"Content-Language": lang, "Vary": "Accept-Language"})


_TRANSLATE_BODY = {
    "requestBody": {
        "content": {
            FHIR_JSON: {
                "schema": {"type": "object"},
                "example": {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "url", "valueUri": f"{CANONICAL_BASE}/ConceptMap/variant-behovskompassen"},
                        {"name": "code", "valueCode": "trygghet"},
                    ],
                },
            }
        }
    }
}


async def translate_get(
    vocab: VocabularyDep,
    url: Annotated[str | None, Query(description="The ConceptMap's canonical url")] = None,
    concept_map_version: Annotated[str | None, Query(alias="conceptMapVersion")] = None,
    system: Annotated[str | None, Query(description="The code's system (the canonical wheel when reverse)")] = None,
    version: Annotated[str | None, Query(description="The version of `system`")] = None,
    code: Annotated[str | None, Query(description="The code to translate")] = None,
    reverse: Annotated[bool, Query(description="true: canonical wheel code → variant code")] = False,
    targetsystem: Annotated[str | None, Query(description="With reverse, the variant's system")] = None,
    accept_language: AcceptLanguage = None,
) -> Response:
    """R4 ``$translate``: translate one code through a variant's crosswalk (``reverse`` for the other way)."""
    return _translate_get(
        vocab, None, url, concept_map_version, system, version, code, reverse, targetsystem, accept_language
    )


async def translate_get_id(
    vocab: VocabularyDep,
    id: IdPath,
    url: Annotated[str | None, Query(description="The ConceptMap's canonical url")] = None,
    concept_map_version: Annotated[str | None, Query(alias="conceptMapVersion")] = None,
    system: Annotated[str | None, Query(description="The code's system (the canonical wheel when reverse)")] = None,
    version: Annotated[str | None, Query(description="The version of `system`")] = None,
    code: Annotated[str | None, Query(description="The code to translate")] = None,
    reverse: Annotated[bool, Query(description="true: canonical wheel code → variant code")] = False,
    accept_language: AcceptLanguage = None,
) -> Response:
    """R4 ``$translate`` through the ConceptMap ``id``."""
    return _translate_get(vocab, id, url, concept_map_version, system, version, code, reverse, None, accept_language)


def _translate_get(
    vocab: Vocabulary,
    map_id: str | None,
    url: str | None,
    concept_map_version: str | None,
    system: str | None,
    version: str | None,
    code: str | None,
    reverse: bool,
    targetsystem: str | None,
    accept_language: str | None,
) -> Response:
    lang = negotiate(accept_language)
    params = {
        "url": url,
        "conceptMapVersion": concept_map_version,
        "system": system,
        "version": version,
        "code": code,
        "reverse": reverse,
        "targetsystem": targetsystem,
    }
    given = {k: v for k, v in params.items() if v is not None}
    return _translate_response(_translate(vocab, given, map_id, lang), lang)


async def translate_post(request: Request, vocab: VocabularyDep, accept_language: AcceptLanguage = None) -> Response:
    """R4 ``$translate`` with a ``Parameters`` body (url, system, code or coding, reverse)."""
    lang = negotiate(accept_language)
    return _translate_response(_translate(vocab, _parameters(await request.body()), None, lang), lang)


async def translate_post_id(
    request: Request, vocab: VocabularyDep, id: IdPath, accept_language: AcceptLanguage = None
) -> Response:
    """R4 ``$translate`` through the ConceptMap ``id``, with a ``Parameters`` body."""
    lang = negotiate(accept_language)
    return _translate_response(_translate(vocab, _parameters(await request.body()), id, lang), lang)


# ------------------------------------------------------------------------------------------- routes
@router.get("/metadata", response_class=FHIRResponse, responses=_FHIR_OK, summary="CapabilityStatement")
async def metadata(request: Request, runtime: RuntimeDep) -> Response:
    """What this FHIR endpoint can do."""
    body = fhir_audit.declare_audit_event(fhir.capability_statement(_base_url(request, runtime)))
    etag = _etag(json.dumps(body, sort_keys=True))
    return _respond(request, body, etag, LATEST_CACHE, "en")


_ROUTE: dict[str, Any] = {"response_class": FHIRResponse, "responses": {**_FHIR_OK, **_PROBLEMS}}
_UNSUPPORTED: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "OperationOutcome: unsupported search parameters (strict handling)",
        "content": {FHIR_JSON: {}},
    }
}
_SEARCH_ROUTE: dict[str, Any] = {**_ROUTE, "responses": {**_ROUTE["responses"], **_UNSUPPORTED}}
# $translate before /{id}, so that "$translate" is never taken for an id.
_TRANSLATE_ROUTES: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
    ("/ConceptMap/$translate", translate_get, translate_post),
    ("/ConceptMap/{id}/$translate", translate_get_id, translate_post_id),
]
for _path, _get, _post in _TRANSLATE_ROUTES:
    router.add_api_route(_path, _get, methods=["GET"], summary="Translate a code (query parameters)", **_ROUTE)
    router.add_api_route(
        _path,
        _post,
        methods=["POST"],
        summary="Translate a code (Parameters body)",
        openapi_extra=_TRANSLATE_BODY,
        **_ROUTE,
    )

for _rtype in RESOURCE_TYPES:
    _read, _vread = _read_handlers(_rtype)
    router.add_api_route(
        f"/{_rtype}",
        _search_handler(_rtype),
        methods=["GET"],
        summary=f"Search {_rtype}",
        operation_id=f"fhir_search_{_rtype}",
        **_SEARCH_ROUTE,
    )
    router.add_api_route(
        f"/{_rtype}/{{id}}",
        _read,
        methods=["GET"],
        summary=f"Read {_rtype}",
        operation_id=f"fhir_read_{_rtype}",
        **_ROUTE,
    )
    router.add_api_route(
        f"/{_rtype}/{{id}}/_history/{{vid}}",
        _vread,
        methods=["GET"],
        summary=f"Read one version of {_rtype}",
        operation_id=f"fhir_vread_{_rtype}",
        **_ROUTE,
    )


# ---------------------------------------------------------------------------------------- AuditEvent
Auditor = Annotated[Principal, Depends(require(Role.AUDITOR))]
_AUDIT_PARAMS = frozenset({"_id", "date", "agent", "agent:identifier", "type", "outcome", "_count", "_cursor"})
_NO_STORE = {"Cache-Control": "no-store"}
_AUDIT_ROUTE: dict[str, Any] = {
    "response_class": FHIRResponse,
    "responses": {
        200: {"content": {FHIR_JSON: {}}},
        **{status: {"content": {PROBLEM_JSON: {}}} for status in (401, 403, 404, 422)},
    },
}


def _token(value: str, system: str, param: str) -> str:
    """The code of a token search value, ``code`` or ``system|code``; another system is a 422."""
    given, bar, code = value.rpartition("|")
    if bar and given and given != system:
        raise _invalid(param, f"{param} codes are from {system}, not {given}")
    return code


def _agent(agent: str | None, agent_identifier: str | None) -> str | None:
    """The organisation id from ``agent`` (``<id>`` or ``Organization/<id>``) and ``agent:identifier``."""
    orgs = set()
    if agent is not None:
        kind, _, org = agent.rpartition("/")
        if kind not in ("", "Organization"):
            raise _invalid("agent", "agent is an organisation: <id> or Organization/<id>")
        orgs.add(org)
    if agent_identifier is not None:
        orgs.add(_token(agent_identifier, fhir_audit.ORGANISATION_SYSTEM, "agent:identifier"))
    if len(orgs) > 1:
        raise _invalid("agent", "agent and agent:identifier name different organisations")
    return orgs.pop() if orgs else None


def _audit_url(base: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params, safe=":|/")
    return f"{base}{router.prefix}/AuditEvent" + (f"?{query}" if query else "")


@router.get(
    "/AuditEvent",
    summary="Search AuditEvent (auditor role)",
    **{**_AUDIT_ROUTE, "responses": {**_AUDIT_ROUTE["responses"], **_UNSUPPORTED}},
)
async def search_audit_events(
    request: Request,
    principal: Auditor,
    session: Session,
    runtime: RuntimeDep,
    id_: Annotated[str | None, Query(alias="_id", description="An entry's id")] = None,
    date: Annotated[list[str] | None, Query(description="`ge2026-01-01`, `lt2026-02-01T12:00Z`; repeatable")] = None,
    agent: Annotated[str | None, Query(description="An organisation id (or `Organization/<id>`)")] = None,
    agent_identifier: Annotated[str | None, Query(alias="agent:identifier")] = None,
    type_: Annotated[str | None, Query(alias="type", description="The hub's action, e.g. `sharing-decision`")] = None,
    outcome: Annotated[str | None, Query(description="`0` success, `4` refused")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(alias="_cursor", description="From the Bundle's `next` link")] = None,
    prefer: Annotated[str | None, Header(description="`handling=lenient` ignores unsupported parameters")] = None,
) -> Response:
    """Audit entries as a searchset Bundle, newest first, paged by the `next` link. Scoped and audited
    exactly like `GET /v1/audit`; there is no child filter here (a personnummer never goes in a URL).
    An unsupported parameter is a 400 OperationOutcome unless `Prefer: handling=lenient` (strict by
    default here, so that a misspelt filter never silently widens a search of the audit trail)."""
    items = request.query_params.multi_items()
    unknown = fhir_search.unsupported(items, _AUDIT_PARAMS)
    if unknown and fhir_search.strict_handling(prefer, default=True):
        return _not_supported(fhir_search.UnsupportedParameters(unknown))
    used = [(k, v) for k, v in items if k not in unknown]
    wanted = _audit_id(id_)
    if wanted is not None:  # continue just above the id, one entry: the read's one access-control path
        cursor, count = audit_log._encode_cursor(wanted + 1), 1
    page = await audit_log.read_audit(
        session,
        actor=actor_for(principal),
        pseudonymizer=runtime.pseudonymizer,
        query=_audit_query(date, _agent(agent, agent_identifier), type_, outcome, cursor, count),
    )
    found = [e for e in page.items if id_ is None or e.id == wanted]
    base = _base_url(request, runtime)
    bundle = fhir.searchset_bundle([fhir_audit.audit_event(e) for e in found], base, self_url=_audit_url(base, used))
    del bundle["total"]  # one page: how many match in all is not counted
    if page.next_cursor is not None and id_ is None:
        params = [(k, v) for k, v in used if k != "_cursor"]
        bundle["link"].append({"relation": "next", "url": _audit_url(base, [*params, ("_cursor", page.next_cursor)])})
    return FHIRResponse(bundle, headers=_NO_STORE)


def _audit_id(value: str | None) -> int | None:
    """The entry id an ``_id`` names; -1 (no entry) for one that is no entry id."""
    if value is None:
        return None
    return int(value) if re.fullmatch(r"[0-9]{1,18}", value) else -1


def _audit_query(
    date: list[str] | None,
    organisation: str | None,
    type_: str | None,
    outcome: str | None,
    cursor: str | None,
    count: int,
) -> audit_log.AuditQuery:
    try:
        since, until = fhir_audit.date_bounds(date or [])
    except ValueError as exc:
        raise _invalid("date", str(exc)) from None
    action = _token(type_, fhir_audit.AUDIT_ACTION_SYSTEM, "type") if type_ is not None else None
    if action is not None and action not in {a.value for a in fhir_audit.ACTION_CODES}:
        raise _invalid("type", f"{action!r} is not an action of {fhir_audit.AUDIT_ACTION_SYSTEM}")
    code = _token(outcome, fhir_audit.OUTCOME_SYSTEM, "outcome") if outcome is not None else None
    if code is not None and code not in fhir_audit.OUTCOME_CODES:
        raise _invalid("outcome", f"outcome is one of {', '.join(fhir_audit.OUTCOME_CODES)}")
    return audit_log.AuditQuery(
        organisation=organisation, action=action, outcome=code, since=since, until=until, cursor=cursor, limit=count
    )


@router.get("/AuditEvent/{id}", summary="Read AuditEvent (auditor role)", **_AUDIT_ROUTE)
async def read_audit_event(
    principal: Auditor,
    session: Session,
    runtime: RuntimeDep,
    id: Annotated[str, Path(description="The audit entry's id")],
) -> Response:
    """One audit entry; 404 when there is none with this id that the caller may see (the read is audited)."""
    missing = NotFound(
        f"there is no AuditEvent with id {id!r} that you may see", errors=[FieldError("id", "unknown id")]
    )
    if not re.fullmatch(r"[0-9]{1,18}", id):
        raise missing
    wanted = int(id)
    # The one access-control path: read_audit, continued just above the id. (read_audit has no id
    # filter; the cursor is the service's own encoding of "entries before this id".)
    page = await audit_log.read_audit(
        session,
        actor=actor_for(principal),
        pseudonymizer=runtime.pseudonymizer,
        query=audit_log.AuditQuery(cursor=audit_log._encode_cursor(wanted + 1), limit=1),
    )
    found = [e for e in page.items if e.id == wanted]
    if not found:
        raise missing
    return FHIRResponse(fhir_audit.audit_event(found[0]), headers=_NO_STORE)
