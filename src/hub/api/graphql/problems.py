"""The expected outcomes every part of the GraphQL schema shares, as union members (``hub.api.graphql.errors``
handles the unexpected ones). Their own module, so that the query roots and the fields they gather
(``flows``, ``schema``) import them without importing each other."""

from __future__ import annotations

import strawberry


@strawberry.type(description="Something asked for does not exist")
class NotFoundProblem:
    detail: str
    field: str | None


@strawberry.type(description="The input is not valid")
class InvalidInputProblem:
    detail: str
    fields: list[str]


@strawberry.type(description="A bearer token is needed, or the one sent is not accepted")
class AuthenticationProblem:
    detail: str


@strawberry.type(description="The caller's roles do not allow this")
class ForbiddenProblem:
    detail: str
