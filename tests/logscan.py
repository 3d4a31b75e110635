"""Finding personal identity numbers in log output."""

from __future__ import annotations

import logging
import re
from datetime import date

from hub.domain.identity import InvalidPersonalIdentityNumber, parse_personal_identity_number
from hub.logging import JsonFormatter

# 6 or 8 digits, an optional separator, 4 digits — not inside a longer run of letters or digits (hashes,
# request ids), so only what reads as a number on its own is considered, then checked like the hub does.
_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])(?:\d{6}|\d{8})[-+]?\d{4}(?![0-9A-Za-z])")


def personal_identity_numbers_in(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        for candidate in _CANDIDATE.findall(line):
            try:
                parse_personal_identity_number(candidate, today=date.today())
            except InvalidPersonalIdentityNumber:
                continue
            found.append(line)
    return found


class CapturingHandler(logging.Handler):
    """Keeps every record as the production formatter writes it (and, to be strict, the raw message)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        try:
            self.lines.append(record.getMessage())
        except (TypeError, ValueError):
            self.lines.append(str(record.msg))
