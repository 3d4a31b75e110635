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
from typing import Annotated, Any

from fastapi import Header, Path, Request, Response

from hub import fhir
from hub.api.deps import RuntimeDep, VocabularyDep
from hub.api.fhir import audit_events, care_plans, care_teams, translate
from hub.api.fhir.common import (
    FHIR_JSON,
    FHIR_OK,
    PREFIX,
    ROUTE,
    UNSUPPORTED,
    AcceptLanguage,
    FHIRResponse,
    IdPath,
    base_url,
    invalid,
    not_supported,
)
from hub.api.fhir.documents import RESOURCE_TYPES, checksum, document, published, render
from hub.api.language import negotiate
from hub.api.rest.vocabulary import conditional_response
from hub.api.routing import Router
from hub.domain.vocabulary import Vocabulary
from hub.fhir import audit as fhir_audit
from hub.fhir import search as fhir_search
from hub.fhir.tasks import declare_referrals

router = Router(prefix=PREFIX, tags=["fhir"])

LATEST_CACHE = "public, max-age=300"
VERSION_CACHE = "public, max-age=31536000, immutable"

PreferHeader = Annotated[
    str | None, Header(description="`handling=strict`: an unsupported search parameter is a 400; default lenient")
]


def _etag(*parts: str) -> str:
    return '"' + hashlib.sha256("|".join(parts).encode()).hexdigest()[:40] + '"'


def _respond(request: Request, body: dict[str, Any], etag: str, cache: str, lang: str) -> Response:
    response = conditional_response(request, etag, body, cache, lang)
    if response.status_code == 200:
        response.headers["content-type"] = FHIR_JSON
    return response


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
    for rid, ver in published(vocab, rtype):
        doc = document(vocab, rtype, rid, ver)
        resource = render(vocab, rtype, doc, lang, expand=False)
        if fhir_search.matches(resource, wanted):
            found.append(resource)
    if fhir_search.names_ids(wanted) and not fhir_search.pins_version(wanted):
        # A resource id names its latest version (as a read does), not every version published under it.
        found = [r for r in found if r["version"] == document(vocab, rtype, r["id"], None).version]
    total = len(found)
    count = 0 if wanted.summary == "count" else wanted.count
    page = found[wanted.offset : None if count is None else wanted.offset + count]
    bundle = fhir.searchset_bundle([fhir_search.summarised(r, wanted.summary) for r in page], base, self_url=None)
    bundle["total"] = total
    bundle["link"] = fhir_search.paged_links(f"{base}{router.prefix}/{rtype}", wanted, total)
    if count == 0:
        del bundle["entry"]
    return {k: bundle[k] for k in ("resourceType", "type", "total", "link", "entry") if k in bundle}


def _read_handlers(rtype: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def respond(request: Request, vocab: Vocabulary, id: str, vid: str | None, accept_language: str | None) -> Response:
        lang = negotiate(accept_language)
        doc = document(vocab, rtype, id, vid)
        body = render(vocab, rtype, doc, lang, expand=True)
        etag = _etag(rtype, checksum(vocab, rtype, doc), lang)
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


# ------------------------------------------------------------------------------------------- routes
@router.get("/metadata", response_class=FHIRResponse, responses=FHIR_OK, summary="CapabilityStatement")
async def metadata(request: Request, runtime: RuntimeDep) -> Response:
    """What this FHIR endpoint can do."""
    body = declare_referrals(fhir_audit.declare_audit_event(fhir.capability_statement(base_url(request, runtime))))
    body["rest"][0]["resource"].append(care_teams.capability_resource())
    body["rest"][0]["resource"].append(care_plans.capability_resource())
    etag = _etag(json.dumps(body, sort_keys=True))
    return _respond(request, body, etag, LATEST_CACHE, "en")


_SEARCH_ROUTE: dict[str, Any] = {**ROUTE, "responses": {**ROUTE["responses"], **UNSUPPORTED}}
# $translate before /{id}, so that "$translate" is never taken for an id.
router.include_router(translate.router)
for _rtype in RESOURCE_TYPES:
    _read, _vread = _read_handlers(_rtype)
    for _path, _handler, _summary, _operation, _options in (
        (f"/{_rtype}", _search_handler(_rtype), f"Search {_rtype}", "search", _SEARCH_ROUTE),
        (f"/{_rtype}/{{id}}", _read, f"Read {_rtype}", "read", ROUTE),
        (f"/{_rtype}/{{id}}/_history/{{vid}}", _vread, f"Read one version of {_rtype}", "vread", ROUTE),
    ):
        router.add_api_route(
            _path,
            _handler,
            methods=["GET"],
            summary=_summary,
            operation_id=f"fhir_{_operation}_{_rtype}",
            **_options,
        )


# AuditEvent (auditors) lives in its own module.
router.include_router(audit_events.router)
router.include_router(care_teams.router)
router.include_router(care_plans.router)
