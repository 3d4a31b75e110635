"""FHIR R4: the shared vocabulary (CodeSystem, ValueSet, ConceptMap, ``$translate``; public) and the
audit trail as AuditEvent (auditors only, through the same service as ``/v1/audit``).

Read-only; rendering lives in ``hub.fhir``, AuditEvent in ``audit_events``. Errors stay RFC 9457
``application/problem+json`` (the project's one error format), not OperationOutcome, except strict
handling's 400 for an unsupported search parameter: see docs/fhir.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response

from hub import fhir
from hub.api.deps import RuntimeDep, VocabularyDep
from hub.api.fhir import audit_events
from hub.api.fhir.common import FHIR_JSON, PREFIX, UNSUPPORTED, FHIRResponse, base_url, invalid, not_supported
from hub.api.language import negotiate
from hub.api.problems import PROBLEM_JSON
from hub.api.rest.vocabulary import conditional_response
from hub.domain.errors import FieldError, NotFound
from hub.domain.vocabulary import (
    CANONICAL_BASE,
    CodeSystemBase,
    UnknownCode,
    VariantDoc,
    Vocabulary,
)
from hub.fhir import audit as fhir_audit
from hub.fhir import search as fhir_search
from hub.fhir.tasks import declare_referrals

router = APIRouter(prefix=PREFIX, tags=["fhir"])

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
            return not_supported(exc)
        except fhir_search.SearchParameterError as exc:
            raise invalid(exc.param, str(exc)) from None
        bundle = _terminology_bundle(vocab, rtype, wanted, lang, base_url(request, runtime))
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
def _translate(vocab: Vocabulary, params: dict[str, Any], map_id: str | None, lang: str) -> dict[str, Any]:
    """Resolve the ConceptMap and direction from R4 ``$translate`` parameters and translate one code."""
    reverse = bool(params.get("reverse") or False)
    url: str | None = params.get("url")
    map_version: str | None = params.get("conceptMapVersion")
    system: str | None = params.get("system")
    version: str | None = params.get("version")
    code: str | None = params.get("code")
    if not code:
        raise invalid("code", "the code to translate is required")
    if url is not None and "|" in url:
        url, _, pinned = url.partition("|")
        map_version = map_version or pinned
    name: str | None = map_id
    if url is not None:
        prefix = f"{CANONICAL_BASE}/ConceptMap/"
        if not url.startswith(prefix) or (map_id is not None and url != prefix + map_id):
            raise invalid("url", f"{url} is not the url of {'this' if map_id else 'a'} ConceptMap of the hub")
        name = url.removeprefix(prefix)
    elif name is None:
        side = params.get("targetsystem") if reverse else system
        if not side:
            raise invalid("url", "name the ConceptMap: its url, its id in the path, or the variant's system")
        name = side
    if map_id is not None:
        _document(vocab, "ConceptMap", map_id, None)  # an unknown id in the path is a 404
    variant = vocab.variant(name, map_version or (None if reverse else version))
    spec = variant.map
    source_url = f"{CANONICAL_BASE}/CodeSystem/{spec.target}" if reverse else variant.url
    if system is not None and system != source_url:
        raise invalid("system", f"this ConceptMap translates codes of {source_url}, not {system}")
    if reverse and version is not None and version != spec.target_version:
        raise invalid("version", f"this ConceptMap maps {spec.target} {spec.target_version}, not {version}")
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
        raise invalid("/", "the body is not JSON; send a FHIR Parameters resource") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "Parameters":
        raise invalid("/resourceType", "the body must be a FHIR Parameters resource")
    entries = data.get("parameter", [])
    if not isinstance(entries, list):
        raise invalid("/parameter", "parameter must be a list")
    params: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        values = [k for k in _VALUE_KEYS if isinstance(entry, dict) and k in entry]
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or len(values) != 1:
            raise invalid(f"/parameter/{i}", "each parameter needs a name and exactly one supported value[x]")
        params[entry["name"]] = entry[values[0]]
    coding = params.pop("coding", None)
    if isinstance(coding, dict):
        for key in ("system", "version", "code"):
            if key in coding:
                params.setdefault(key, coding[key])
    for key, value in params.items():
        wanted = bool if key == "reverse" else str
        if not isinstance(value, wanted):
            raise invalid(f"/parameter/{key}", f"{key} must be a {wanted.__name__}")
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
    body = declare_referrals(fhir_audit.declare_audit_event(fhir.capability_statement(base_url(request, runtime))))
    etag = _etag(json.dumps(body, sort_keys=True))
    return _respond(request, body, etag, LATEST_CACHE, "en")


_ROUTE: dict[str, Any] = {"response_class": FHIRResponse, "responses": {**_FHIR_OK, **_PROBLEMS}}
_SEARCH_ROUTE: dict[str, Any] = {**_ROUTE, "responses": {**_ROUTE["responses"], **UNSUPPORTED}}
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


# AuditEvent (auditors) lives in its own module.
router.include_router(audit_events.router)
