"""The GraphQL schema. Resolvers call the same services and domain objects as the REST routers.

Expected outcomes (an unknown vocabulary, a missing token) are union members, not errors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from hub.api.graphql.context import Context
from hub.api.graphql.flows import FlowsQuery
from hub.api.graphql.guard import guarded
from hub.api.graphql.plans import PlanQuery
from hub.api.graphql.problems import AuthenticationProblem, InvalidInputProblem, NotFoundProblem
from hub.api.graphql.referrals import referrals_field
from hub.api.graphql.teams import TeamQuery
from hub.api.graphql.vocabulary import (
    CodeSystem,
    Goal,
    Indicator,
    Lang,
    LangArg,
    Questions,
    Translation,
    TranslationMatch,
    TranslationResult,
    VocabularyEntry,
    WellbeingWheel,
    WheelVariant,
    concept,
    localized,
    variant,
)
from hub.domain.errors import HubError, InvalidInput, NotFound
from hub.domain.vocabulary import CodeSystemBase, WellbeingWheelDoc
from hub.services.organisations import get_organisation
from hub.services.registry import ServiceFilter, ServiceView, list_organisations, search_services


@strawberry.type
class Organisation:
    id: str
    name: str
    type: str
    municipality_code: str | None
    hsa_id: str | None = None
    organisation_number: str | None = None


@strawberry.type(description="How the hub sees the caller's token")
class Me:
    subject: str
    organisation_id: str
    roles: list[str]
    organisation: Organisation | None


@strawberry.type(name="Service", description="A service of the directory (Vägvisaren) and who offers it")
class DirectoryService:
    id: str
    name: str
    description: str
    intervention_level: str | None
    trappan_step: int | None
    age_min: int
    age_max: int
    referral_kinds: list[str]
    dimensions: list[str]
    municipality_codes: list[str]
    waiting_days: int | None
    waiting_confirmed_at: datetime | None
    confirmed: bool = strawberry.field(description="False: never confirmed, or longer ago than the hub's maximum age")
    organisation: Organisation


@strawberry.type(description="One page of a service search; pass nextCursor as `after` for the next")
class ServicePage:
    items: list[DirectoryService]
    next_cursor: str | None


ServiceSearchResult = Annotated[
    ServicePage | InvalidInputProblem | AuthenticationProblem, strawberry.union("ServiceSearchResult")
]


def _directory_service(view: ServiceView) -> DirectoryService:
    s, o = view.service, view.organisation
    return DirectoryService(
        **s.model_dump(exclude={"organisation_id", "active", "created_at", "updated_at"}),
        confirmed=view.confirmed,
        organisation=Organisation(id=o.id, name=o.name, type=o.type, municipality_code=o.municipality_code),
    )


CodeSystemResult = Annotated[CodeSystem | NotFoundProblem, strawberry.union("CodeSystemResult")]
OrganisationResult = Annotated[
    Organisation | NotFoundProblem | InvalidInputProblem | AuthenticationProblem,
    strawberry.union("OrganisationResult"),
]
TranslationOutcome = Annotated[
    Translation | NotFoundProblem | InvalidInputProblem, strawberry.union("TranslationOutcome")
]
MeResult = Annotated[Me | AuthenticationProblem, strawberry.union("MeResult")]


def _not_found(exc: NotFound) -> NotFoundProblem:
    return NotFoundProblem(detail=exc.detail, field=exc.errors[0].pointer if exc.errors else None)


@strawberry.type
class Query(FlowsQuery, TeamQuery, PlanQuery):
    @strawberry.field(description="Every vocabulary: names, versions, checksums")
    def vocabularies(self, info: strawberry.Info[Context, None], lang: LangArg = Lang.sv) -> list[VocabularyEntry]:
        return [
            VocabularyEntry(
                name=e.name,
                version=e.version,
                kind=e.kind,
                title=e.title.get(lang.value),
                checksum=e.checksum,
                latest=e.latest,
                url=e.url,
            )
            for e in info.context.runtime.vocabulary.index()
        ]

    @strawberry.field(description="One code system (latest version unless `version` is given)")
    def code_system(
        self, info: strawberry.Info[Context, None], name: str, version: str | None = None, lang: LangArg = Lang.sv
    ) -> CodeSystemResult:
        try:
            doc = info.context.runtime.vocabulary.get(name, version)
        except NotFound as exc:
            return _not_found(exc)
        if not isinstance(doc, CodeSystemBase):
            return NotFoundProblem(detail=f"{name} is not a code system", field="name")
        return CodeSystem(
            name=doc.name,
            version=doc.version,
            url=doc.url,
            title=doc.title.get(lang.value),
            description=doc.description.get(lang.value),
            concepts=[concept(c, lang) for c in doc.concepts()],
        )

    @strawberry.field(description="The canonical wellbeing wheel (SHANARRI)")
    def wellbeing_wheel(
        self, info: strawberry.Info[Context, None], version: str | None = None, lang: LangArg = Lang.sv
    ) -> WellbeingWheel:
        doc = info.context.runtime.vocabulary.get("wellbeing-wheel", version)
        assert isinstance(doc, WellbeingWheelDoc)
        l = lang.value  # noqa: E741
        return WellbeingWheel(
            version=doc.version,
            url=doc.url,
            indicators=[
                Indicator(
                    code=i.code,
                    label=i.label.get(l),
                    description=localized(i.description, lang),
                    crc_articles=list(i.crc_articles),
                    questions=Questions(
                        child=[q.get(l) for q in i.questions.child],
                        guardian=[q.get(l) for q in i.questions.guardian],
                        professional=[q.get(l) for q in i.questions.professional],
                    ),
                    goals=[g.code for g in doc.goals if i.code in g.indicators],
                )
                for i in doc.indicators
            ],
            goals=[
                Goal(
                    code=g.code,
                    label=g.label.get(l),
                    description=localized(g.description, lang),
                    indicators=list(g.indicators),
                )
                for g in doc.goals
            ],
        )

    @strawberry.field(description="Local wheel variants with their crosswalks")
    def wheel_variants(self, info: strawberry.Info[Context, None], lang: LangArg = Lang.sv) -> list[WheelVariant]:
        vocab = info.context.runtime.vocabulary
        out = []
        for v in vocab.variants():
            target = vocab.get(v.map.target, v.map.target_version)
            assert isinstance(target, CodeSystemBase)
            target_display = {c.code: c.display for c in target.concepts()}
            own = {c.code: c.label for c in v.concept}
            out.append(variant(v, lang, own, target_display))
        return out

    @strawberry.field(description="Translate codes through a variant's crosswalk (reverse: canonical → variant)")
    def translate(
        self,
        info: strawberry.Info[Context, None],
        system: str,
        codes: list[str],
        reverse: bool = False,
        version: str | None = None,
        lang: LangArg = Lang.sv,
    ) -> TranslationOutcome:
        try:
            t = info.context.runtime.vocabulary.translate(system=system, codes=codes, reverse=reverse, version=version)
        except NotFound as exc:
            return _not_found(exc)
        except HubError as exc:
            return InvalidInputProblem(detail=exc.detail, fields=[e.pointer for e in exc.errors])
        return Translation(
            variant=t.variant,
            reverse=t.reverse,
            source=t.source,
            target=t.target,
            unmatched=list(t.unmatched),
            results=[
                TranslationResult(
                    code=r.code,
                    matches=[
                        TranslationMatch(
                            code=m.code,
                            display=m.display.get(lang.value),
                            equivalence=m.equivalence.value,
                            comment=localized(m.comment, lang),
                        )
                        for m in r.matches
                    ],
                )
                for r in t.results
            ],
        )

    @strawberry.field(description="The child's plan JSON Schema (2020-12)")
    def child_plan_schema(self, info: strawberry.Info[Context, None], version: str | None = None) -> JSON:
        doc = info.context.runtime.vocabulary.get("child-plan", version)
        return JSON(doc.json_schema)  # type: ignore[union-attr]

    @strawberry.field(description="Any vocabulary document as JSON, labels in one language")
    def document(
        self, info: strawberry.Info[Context, None], name: str, version: str | None = None, lang: LangArg = Lang.sv
    ) -> JSON | None:
        try:
            return JSON(info.context.runtime.vocabulary.document_json(name, version, lang.value))
        except NotFound:
            return None

    @strawberry.field(
        description="The caller's organisation and roles as the hub sees them (needs a token)", metadata=guarded(cost=5)
    )
    async def me(self, info: strawberry.Info[Context, None]) -> MeResult:
        try:
            principal = await info.context.principal()
        except HubError as exc:
            return AuthenticationProblem(detail=exc.detail)
        async with info.context.runtime.sessions() as session:
            org = await get_organisation(session, organisation_id=principal.organisation_id)
        return Me(
            subject=principal.subject,
            organisation_id=principal.organisation_id,
            roles=sorted(r.value for r in principal.roles),
            organisation=Organisation(id=org.id, name=org.name, type=org.type, municipality_code=org.municipality_code)
            if org
            else None,
        )

    @strawberry.field(
        description="The registry organisation carrying an HSA-id, as GET /v1/registry/organisations?hsa_id= "
        "(needs a token)",
        metadata=guarded(cost=5),
    )
    async def organisation_by_hsa_id(self, info: strawberry.Info[Context, None], hsa_id: str) -> OrganisationResult:
        try:
            await info.context.principal()
        except HubError as exc:
            return AuthenticationProblem(detail=exc.detail)
        try:
            async with info.context.runtime.sessions() as session:
                page = await list_organisations(
                    session, type=None, municipality_code=None, cursor=None, limit=1, hsa_id=hsa_id
                )
        except InvalidInput as exc:
            return InvalidInputProblem(detail=exc.detail, fields=[e.pointer for e in exc.errors])
        if not page.items:
            return NotFoundProblem(detail="No organisation in the registry carries this HSA-id.", field="hsaId")
        o = page.items[0]
        return Organisation(
            id=o.id,
            name=o.name,
            type=o.type,
            municipality_code=o.municipality_code,
            hsa_id=o.hsa_id,
            organisation_number=o.organisation_number,
        )

    @strawberry.field(
        description="Search the service directory (needs a token), ranked as GET /v1/registry/services",
        metadata=guarded(cost=20),
    )
    async def services(
        self,
        info: strawberry.Info[Context, None],
        age: int | None = None,
        municipality: str | None = None,
        referral_kind: str | None = None,
        dimensions: list[str] | None = None,
        trappan_step: int | None = None,
        organisation_type: str | None = None,
        q: str | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> ServiceSearchResult:
        try:
            await info.context.principal()
        except HubError as exc:
            return AuthenticationProblem(detail=exc.detail)
        runtime = info.context.runtime
        query = ServiceFilter(
            age=age,
            municipality_code=municipality,
            referral_kind=referral_kind,
            dimensions=tuple(dimensions or ()),
            trappan_step=trappan_step,
            organisation_type=organisation_type,
            text=q.strip() if q and q.strip() else None,
        )
        try:
            async with runtime.sessions() as session:
                page = await search_services(
                    session,
                    vocabulary=runtime.vocabulary,
                    query=query,
                    cursor=after,
                    limit=max(1, min(first, 200)),
                    max_age_days=runtime.settings.service_confirmation_max_age_days,
                )
        except InvalidInput as exc:
            return InvalidInputProblem(detail=exc.detail, fields=[e.pointer for e in exc.errors])
        return ServicePage(items=[_directory_service(v) for v in page.items], next_cursor=page.next_cursor)

    referrals = referrals_field
