"""Per-request context shared by middleware, logging and problem details."""

from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The runtime's clock (``Runtime.clock``) for this request; None outside a request: the system clock.
clock_var: ContextVar[Callable[[], datetime] | None] = ContextVar("clock", default=None)
