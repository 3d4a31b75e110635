"""The shared vocabulary over REST. Public: no token needed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hub.api.deps import VocabularyDep
from hub.api.language import negotiate
from hub.api.problems import HTTP_PROBLEMS, PROBLEM_JSON, problem_response
from hub.api.routing import Router
from hub.domain.vocabulary import Translation
from hub.services.child_plan import validate_child_plan

router = Router(prefix="/v1/vocabulary", tags=["vocabulary"])

LATEST_CACHE = "public, max-age=300"
# A published version never changes: caches may keep it for good.
VERSION_CACHE = "public, max-age=31536000, immutable"

AcceptLanguage = Annotated[
    str | None,
    Header(description="`sv` (default) or `en`; selects the language of every label and description"),
]
LangAll = Annotated[
    Literal["all"] | None,
    Query(description="`all` returns both languages ({sv, en}) instead of negotiating one"),
]


class IndexEntry(BaseModel):
    name: str
    version: str
    kind: str
    title: str
    status: str
    checksum: str = Field(description="sha256 over the published file's canonical JSON")
    latest: bool
    url: str | None = Field(description="Canonical FHIR url of the code system, when it is one")
    href: str


class VocabularyIndex(BaseModel):
    language: str
    vocabularies: list[IndexEntry]


class TranslateRequest(BaseModel):
    system: str = Field(
        description="A wheel variant's name, e.g. `variant-behovskompassen`", examples=["variant-behovskompassen"]
    )
    version: str | None = Field(default=None, description="The variant version; latest when omitted")
    codes: list[str] = Field(min_length=1, max_length=500, examples=[["trygghet", "fritid"]])
    reverse: bool = Field(default=False, description="false: variant → canonical wheel; true: canonical → variant")


def _etag(checksum: str, lang: str) -> str:
    return f'"{checksum.removeprefix("sha256:")[:32]}-{lang}"'


def conditional_response(request: Request, etag: str, body: Any, cache: str, lang: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": cache, "Vary": "Accept-Language"}
    if lang != "all":
        headers["Content-Language"] = lang
    inm = request.headers.get("if-none-match")
    if inm is not None and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)


@router.get("", response_model=VocabularyIndex, summary="Every vocabulary: names, versions, checksums")
async def index(request: Request, vocab: VocabularyDep, accept_language: AcceptLanguage = None) -> Response:
    lang = negotiate(accept_language)
    entries = [
        IndexEntry(
            name=e.name,
            version=e.version,
            kind=e.kind,
            title=e.title.get(lang),
            status=e.status.value,
            checksum=e.checksum,
            latest=e.latest,
            url=e.url,
            href=f"/v1/vocabulary/{e.name}/versions/{e.version}",
        )
        for e in vocab.index()
    ]
    body = VocabularyIndex(language=lang, vocabularies=entries).model_dump(mode="json")
    combined = "".join(e.checksum for e in vocab.index())
    import hashlib

    etag = _etag(hashlib.sha256(combined.encode()).hexdigest(), lang)
    return conditional_response(request, etag, body, LATEST_CACHE, lang)


def _document(
    request: Request,
    vocab: VocabularyDep,
    name: str,
    version: str | None,
    accept_language: str | None,
    lang_all: str | None,
    cache: str,
) -> Response:
    lang = "all" if lang_all == "all" else negotiate(accept_language)
    resolved = version or vocab.latest_version(name)
    checksum = vocab.checksum(name, resolved)
    body = vocab.document_json(name, resolved, None if lang == "all" else lang)
    body = {"checksum": checksum, "language": lang, **body}
    return conditional_response(request, _etag(checksum, lang), body, cache, lang)


@router.get(
    "/{name}",
    summary="The latest version of one vocabulary",
    responses={
        200: {"content": {"application/json": {}}},
        304: {"description": "Not modified"},
        404: {"content": {PROBLEM_JSON: {}}},
    },
)
async def latest(
    request: Request, name: str, vocab: VocabularyDep, accept_language: AcceptLanguage = None, lang: LangAll = None
) -> Response:
    return _document(request, vocab, name, None, accept_language, lang, LATEST_CACHE)


@router.get(
    "/{name}/versions/{version}",
    summary="One published version (immutable)",
    responses={
        200: {"content": {"application/json": {}}},
        304: {"description": "Not modified"},
        404: {"content": {PROBLEM_JSON: {}}},
    },
)
async def version(
    request: Request,
    name: str,
    version: str,
    vocab: VocabularyDep,
    accept_language: AcceptLanguage = None,
    lang: LangAll = None,
) -> Response:
    return _document(request, vocab, name, version, accept_language, lang, VERSION_CACHE)


@router.post("/translate", response_model=None, summary="Translate codes through a wheel variant's crosswalk")
async def translate(
    body: TranslateRequest, vocab: VocabularyDep, accept_language: AcceptLanguage = None
) -> dict[str, Any]:
    """Every input code gets *all* its matches with the map's equivalence; codes with none are listed
    in `unmatched`, never dropped silently."""
    result: Translation = vocab.translate(
        system=body.system, codes=body.codes, reverse=body.reverse, version=body.version
    )
    lang = negotiate(accept_language)
    return vocab_localize(result.model_dump(mode="json"), lang)


def vocab_localize(data: dict[str, Any], lang: str) -> dict[str, Any]:
    from hub.domain.vocabulary import localize

    return dict(localize(data, lang))


class PlanValidation(BaseModel):
    valid: bool
    schema_version: str


@router.post(
    "/child-plan/validate",
    response_model=PlanValidation,
    summary="Check a child's plan against the plan schema",
    responses={
        422: {"description": "Every violation, as problem+json with JSON pointers", "content": {PROBLEM_JSON: {}}}
    },
)
async def validate_plan(
    plan: dict[str, Any],
    vocab: VocabularyDep,
    version: Annotated[str | None, Query(description="Schema version; latest when omitted")] = None,
) -> Response:
    doc = vocab.get("child-plan", version)
    violations = validate_child_plan(plan, doc.json_schema)  # type: ignore[union-attr]
    if violations:
        errors = [{"pointer": v.pointer, "detail": v.message, "code": "schema"} for v in violations]
        return problem_response(
            HTTP_PROBLEMS[422],
            f"The plan breaks the child-plan schema {doc.version} in {len(errors)} place(s).",
            errors=errors,
        )
    return JSONResponse(PlanValidation(valid=True, schema_version=doc.version).model_dump())
