"""``/graphql``: the schema with the hub's extensions, behind strawberry's FastAPI view.

The view is where every GraphQL answer passes, so errors become problems here (``errors.formatted``). A
request refused as a whole (no data) answers with its problem's HTTP status instead of 200 (401 with
``WWW-Authenticate``, 403, 422, 429 and 503 with ``Retry-After``, 500 for a masked internal error) and a body that
is both: a problem+json document whose ``data`` and ``errors`` members are the GraphQL response. A request
that produced data answers 200, its field errors beside the data, as GraphQL clients expect.

Outside dev mode introspection is refused, graphql-core's "Did you mean …" suggestions are cut, and the
GraphiQL explorer (which loads its scripts from unpkg.com) is not served. No subscriptions exist, so no
WebSocket protocol is offered, and batching stays off (strawberry's default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cross_web import HTTPException
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from strawberry.extensions import DisableIntrospection, MaxTokensLimiter, SchemaExtension
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from hub.api.graphql.context import Context, get_context
from hub.api.graphql.errors import HubSchema, formatted
from hub.api.graphql.guard import CostBudget, GuardConfig, RequestGuard, root_policies
from hub.api.graphql.limits import Limits
from hub.api.graphql.schema import Query
from hub.api.problems import HTTP_PROBLEMS, PROBLEM_JSON, problem_body
from hub.config import Settings


class HubGraphQLRouter(GraphQLRouter[Context, None]):
    def __init__(self, schema: HubSchema, *, dev_mode: bool, database_retry_after: int) -> None:
        super().__init__(
            schema,
            context_getter=get_context,
            path="/graphql",
            tags=["graphql"],
            graphql_ide="graphiql" if dev_mode else None,
            subscription_protocols=(),
        )
        self.dev_mode = dev_mode
        self.database_retry_after = database_retry_after

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            return await super().run(request, context=context, root_value=root_value)
        except HTTPException as exc:  # strawberry's own refusals (unreadable body, GET mutation…) in plain text
            ptype = HTTP_PROBLEMS.get(exc.status_code, HTTP_PROBLEMS[400])  # it raises 400, 404 and 405
            detail = "There is nothing at this address." if exc.status_code == 404 else exc.reason
            return JSONResponse(problem_body(ptype, detail), status_code=ptype.status, media_type=PROBLEM_JSON)

    def decode_json(self, data: str | bytes) -> object:
        try:
            return super().decode_json(data)
        except RecursionError:  # JSON nested past the parser's recursion limit
            raise HTTPException(400, "The request body is nested too deeply.") from None

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            response["errors"] = [
                formatted(e, dev_mode=self.dev_mode, database_retry_after=self.database_retry_after)
                for e in result.errors
            ]
        if result.extensions:
            response["extensions"] = result.extensions
        return response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        if isinstance(response_data, Mapping) and response_data.get("data") is None and response_data.get("errors"):
            return _refused_as_a_whole(response_data, sub_response)
        return super().create_response(response_data, sub_response)


def _refused_as_a_whole(response_data: GraphQLHTTPResponse, sub_response: Response) -> Response:
    """A problem document that is also a GraphQL response: the problem's members at the top, for HTTP
    clients and gateways, and ``data`` and ``errors`` beside them, for GraphQL clients."""
    problems = [e["extensions"] for e in response_data.get("errors") or () if isinstance(e, dict)]
    worst = next((p for p in problems if p["status"] >= 500), problems[0])
    headers = {k: v for k, v in sub_response.headers.items() if not k.startswith("content-")}
    if worst["status"] == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hub"'
    if worst["status"] in (429, 503) and "retry_after" in worst:
        headers["Retry-After"] = str(worst["retry_after"])
    body = {**worst, **response_data}
    return JSONResponse(body, status_code=worst["status"], media_type=PROBLEM_JSON, headers=headers)


def build_schema(settings: Settings) -> HubSchema:
    limits = Limits(
        max_depth=settings.graphql_max_depth,
        max_aliases=settings.graphql_max_aliases,
        max_fields=settings.graphql_max_fields,
        max_cost=settings.graphql_max_cost,
    )
    budget = CostBudget(settings.graphql_cost_per_minute)
    config = StrawberryConfig()
    guard = GuardConfig(limits=limits, policies=root_policies(Query, config), budget=budget)
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(settings.graphql_max_tokens),
        RequestGuard.factory(guard),
    ]
    if not settings.dev_mode:
        extensions.append(DisableIntrospection)
    return HubSchema(query=Query, extensions=extensions, config=config)


def graphql_router(settings: Settings) -> HubGraphQLRouter:
    return HubGraphQLRouter(
        build_schema(settings), dev_mode=settings.dev_mode, database_retry_after=settings.database_retry_after_seconds
    )
