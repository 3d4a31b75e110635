"""FHIR R4 ``ConceptMap/$translate``: one code through a variant's crosswalk (or back), by query
parameters or a ``Parameters`` body, with or without the ConceptMap's id in the path."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from hub import fhir
from hub.api.deps import VocabularyDep
from hub.api.fhir.common import FHIR_JSON, ROUTE, AcceptLanguage, FHIRResponse, IdPath, invalid
from hub.api.fhir.documents import document
from hub.api.language import negotiate
from hub.domain.vocabulary import CANONICAL_BASE, UnknownCode, Vocabulary

router = APIRouter()


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
        document(vocab, "ConceptMap", map_id, None)  # an unknown id in the path is a 404
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


# The query parameters of GET $translate, with or without the ConceptMap's id in the path.
MapUrl = Annotated[str | None, Query(description="The ConceptMap's canonical url")]
MapVersion = Annotated[str | None, Query(alias="conceptMapVersion")]
SourceSystem = Annotated[str | None, Query(description="The code's system (the canonical wheel when reverse)")]
SourceVersion = Annotated[str | None, Query(description="The version of `system`")]
SourceCode = Annotated[str | None, Query(description="The code to translate")]
Reverse = Annotated[bool, Query(description="true: canonical wheel code → variant code")]


async def translate_get(
    vocab: VocabularyDep,
    url: MapUrl = None,
    concept_map_version: MapVersion = None,
    system: SourceSystem = None,
    version: SourceVersion = None,
    code: SourceCode = None,
    reverse: Reverse = False,
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
    url: MapUrl = None,
    concept_map_version: MapVersion = None,
    system: SourceSystem = None,
    version: SourceVersion = None,
    code: SourceCode = None,
    reverse: Reverse = False,
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


# $translate before /{id}, so that "$translate" is never taken for an id.
_TRANSLATE_ROUTES: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
    ("/ConceptMap/$translate", translate_get, translate_post),
    ("/ConceptMap/{id}/$translate", translate_get_id, translate_post_id),
]
for _path, _get, _post in _TRANSLATE_ROUTES:
    router.add_api_route(_path, _get, methods=["GET"], summary="Translate a code (query parameters)", **ROUTE)
    router.add_api_route(
        _path,
        _post,
        methods=["POST"],
        summary="Translate a code (Parameters body)",
        openapi_extra=_TRANSLATE_BODY,
        **ROUTE,
    )
