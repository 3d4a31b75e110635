"""Every GraphQL error leaves as a problem: the RFC 9457 fields of ``hub.api.problems`` in its ``extensions``.

One function (``problem_of``) classifies each error; the HTTP view applies it to every result it sends:

- a hub error (``hub.domain.errors``) raised anywhere keeps its problem type, status and human detail;
- the client's document or variables at fault (syntax, validation, coercion): ``malformed-request`` (400)
  for syntax, ``invalid-input`` (422) otherwise, with graphql-core's message; its "Did you mean …"
  suggestions are cut outside dev mode, since they spell out the schema when introspection is off;
- the database unreachable (``hub.database_availability``): ``database-unavailable`` (503)
  with ``retry_after``, which the view also sends as ``Retry-After``, as the REST middleware does;
- anything else (a database error, a bug) is masked to ``internal-error`` (500) with the request id. Its
  message can hold SQL and bound parameters (personal data), so neither the client nor the log gets it:
  ``HubSchema.process_errors`` logs the class name only, as the REST handler does.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.types import ExecutionContext

from hub.api.problems import (
    DATABASE_UNAVAILABLE,
    DATABASE_UNAVAILABLE_DETAIL,
    HTTP_PROBLEMS,
    problem_body,
    problem_for,
)
from hub.database_availability import is_database_unavailable
from hub.domain.errors import HubError, RateLimited

log = logging.getLogger("hub.api")

INTERNAL_DETAIL = "The hub failed to handle this request; it has been logged."
_SUGGESTION = re.compile(r" Did you mean [^?]*\?")


def hub_error(error: GraphQLError) -> HubError | None:
    """The hub error behind a GraphQL error, if one is (graphql-core wraps errors in errors)."""
    cause: BaseException | None = error.original_error
    while cause is not None:
        if isinstance(cause, HubError):
            return cause
        cause = cause.original_error if isinstance(cause, GraphQLError) else None
    return None


def is_internal(error: GraphQLError) -> bool:
    """True for what the hub did wrong, as opposed to what the request did wrong."""
    if hub_error(error) is not None:
        return False
    if error.path is not None:
        return True  # raised while resolving or completing a field: not a fault of the document
    original = error.original_error
    # Coercion of variables wraps the scalar's own error and points at the variable; an exception that
    # escaped strawberry's machinery (an extension, the parser) points nowhere.
    return not (original is None or isinstance(original, GraphQLError | StrawberryInputCoercionError) or error.nodes)


def problem_of(error: GraphQLError, *, dev_mode: bool, database_retry_after: int) -> dict[str, Any]:
    """The problem body (``type``, ``title``, ``status``, ``detail``, ``request_id``, ``errors``) for one error."""
    if (hub := hub_error(error)) is not None:
        fields = [{"pointer": f.pointer, "detail": f.message, "code": f.code} for f in hub.errors]
        wait = hub.retry_after if isinstance(hub, RateLimited) else None  # the view sends it as Retry-After
        return problem_body(problem_for(hub), hub.detail, errors=fields or None, retry_after=wait)
    if is_internal(error):
        if error.original_error is not None and is_database_unavailable(error.original_error):
            return problem_body(DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_DETAIL, retry_after=database_retry_after)
        return problem_body(HTTP_PROBLEMS[500], INTERNAL_DETAIL)
    detail = error.message if dev_mode else _SUGGESTION.sub("", error.message)
    return problem_body(HTTP_PROBLEMS[400 if isinstance(error, GraphQLSyntaxError) else 422], detail)


def formatted(error: GraphQLError, *, dev_mode: bool, database_retry_after: int) -> dict[str, Any]:
    """The error as the response carries it: the problem's detail as message, the problem in extensions."""
    problem = problem_of(error, dev_mode=dev_mode, database_retry_after=database_retry_after)
    out: dict[str, Any] = {"message": problem["detail"]}
    if error.locations is not None:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path is not None:
        out["path"] = error.path
    out["extensions"] = problem
    return out


class HubSchema(strawberry.Schema):
    """Strawberry's schema, logging errors the hub's way: unexpected ones by class name, nothing else.

    Strawberry's default logs every error with its message and traceback: SQL with its parameters for a
    database error, and the client's own input for a validation error."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            if is_internal(error):
                cause = error.original_error
                name = type(cause).__name__ if cause is not None else "GraphQLError"
                if cause is not None and is_database_unavailable(cause):
                    log.warning("database unavailable", extra={"error_class": name})
                else:
                    log.error("unhandled graphql error", extra={"error_class": name})
