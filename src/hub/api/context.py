"""Per-request context shared by middleware, logging and problem details."""

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
