"""Swedish personal identity numbers and the keyed pseudonyms the hub stores instead of them.

A child is identified by a *personnummer* or, for people not (yet) registered in Sweden, a
*samordningsnummer* (coordination number: the day of birth plus 60). Both are accepted in the
10-digit form ``YYMMDD-NNNC`` / ``YYMMDD+NNNC`` (``+`` meaning the person has turned 100) or without
separator, and in the 12-digit form ``YYYYMMDDNNNC`` with an optional ``-`` before the last four.

The number itself is sensitive: nothing in this module ever puts it into a ``repr``, a ``str`` or an
exception message, so it cannot leak into logs by accident. Only :attr:`PersonalIdentityNumber.canonical`
gives it out, on purpose. The hub stores :meth:`Pseudonymizer.pseudonym` (HMAC-SHA256 with a key id, so
keys can rotate) for matching, never the number in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

__all__ = [
    "IdentityKind",
    "InvalidPersonalIdentityNumber",
    "InvalidReason",
    "PersonalIdentityNumber",
    "Pseudonymizer",
    "luhn_check_digit",
    "parse_personal_identity_number",
]

IdentityKind = Literal["personnummer", "samordningsnummer"]
"""Which kind of number: a personnummer or a samordningsnummer (day of birth + 60)."""

InvalidReason = Literal["format", "checksum", "date"]
"""Why a number was rejected: its shape, its Luhn check digit, or its date of birth."""

_SAMORDNING_DAY_OFFSET = 60

# Optional century, six date digits, optional separator, four digits. Anything else is a format error.
_PATTERN = re.compile(r"(?P<century>[0-9]{2})?(?P<date>[0-9]{6})(?P<sep>[-+]?)(?P<tail>[0-9]{4})", re.ASCII)

_MESSAGES: dict[InvalidReason, tuple[str, str]] = {
    "format": (
        "The personal identity number must be 10 digits (YYMMDD-NNNC, YYMMDD+NNNC or YYMMDDNNNC) or "
        "12 digits (YYYYMMDDNNNC, optionally YYYYMMDD-NNNC).",
        "Personnumret måste ha 10 siffror (ÅÅMMDD-NNNK, ÅÅMMDD+NNNK eller ÅÅMMDDNNNK) eller "
        "12 siffror (ÅÅÅÅMMDDNNNK, eventuellt ÅÅÅÅMMDD-NNNK).",
    ),
    "checksum": (
        "The check digit of the personal identity number is wrong.",
        "Personnumrets kontrollsiffra stämmer inte.",
    ),
    "date": (
        "The personal identity number does not contain a valid date of birth that has already occurred.",
        "Personnumret innehåller inget giltigt födelsedatum som redan har inträffat.",
    ),
}


class InvalidPersonalIdentityNumber(ValueError):
    """Raised when a personnummer or samordningsnummer is rejected.

    ``reason`` is one of ``format``, ``checksum`` or ``date``; ``str(error)`` is the English message and
    ``message_sv`` the Swedish one. Neither ever contains the number that was rejected.
    """

    def __init__(self, reason: InvalidReason) -> None:
        self.reason: InvalidReason = reason
        self.message_en, self.message_sv = _MESSAGES[reason]
        super().__init__(self.message_en)

    def __repr__(self) -> str:
        return f"InvalidPersonalIdentityNumber(reason={self.reason!r})"


def luhn_check_digit(nine_digits: str) -> int:
    """The Luhn check digit for the first nine digits of the 10-digit form (``YYMMDDNNN``)."""
    total = 0
    for index, char in enumerate(nine_digits):
        product = int(char) * (2 if index % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return (10 - total % 10) % 10


@dataclass(frozen=True, slots=True, repr=False)
class PersonalIdentityNumber:
    """A validated personnummer or samordningsnummer (immutable value object).

    ``canonical`` is the 12-digit form without separator (the real date for a personnummer, the
    day + 60 for a samordningsnummer, as the number is written). ``repr()`` and ``str()`` are masked.
    Build it with :func:`parse_personal_identity_number`, never directly.
    """

    canonical: str
    kind: IdentityKind
    birth_date: date

    def age_on(self, on: date) -> int:
        """Age in whole years on the given date (a person born on 29 February turns a year older on
        1 March in a common year). Raises ``ValueError`` for a date before birth."""
        if on < self.birth_date:
            raise ValueError("the date is before the date of birth")
        years = on.year - self.birth_date.year
        if (on.month, on.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years

    def __repr__(self) -> str:
        return "PersonalIdentityNumber(****)"

    def __str__(self) -> str:
        return "****"

    def __format__(self, format_spec: str) -> str:
        return "****"


def _birth_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_personal_identity_number(text: str, *, today: date) -> PersonalIdentityNumber:
    """Parse and validate a personnummer or samordningsnummer.

    ``today`` is the reference date for the century of the 10-digit form (``-``: under 100 years old,
    ``+``: 100 or older) and for rejecting birth dates in the future; there is no hidden clock.
    Surrounding whitespace is ignored; anything else that is not the exact shape is rejected.

    Raises :class:`InvalidPersonalIdentityNumber` with ``reason`` ``format``, ``checksum`` or ``date``.
    """
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        raise InvalidPersonalIdentityNumber("format")
    century, six, sep, tail = match.group("century", "date", "sep", "tail")
    if century is not None and sep == "+":
        # '+' only carries meaning (age 100+) in the 10-digit form.
        raise InvalidPersonalIdentityNumber("format")

    yy, month, day_digits = int(six[0:2]), int(six[2:4]), int(six[4:6])
    kind: IdentityKind = "personnummer"
    day = day_digits
    if day_digits > _SAMORDNING_DAY_OFFSET:
        kind = "samordningsnummer"
        day = day_digits - _SAMORDNING_DAY_OFFSET
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise InvalidPersonalIdentityNumber("date")

    if luhn_check_digit(six + tail[:3]) != int(tail[3]):
        raise InvalidPersonalIdentityNumber("checksum")

    if century is not None:
        year = int(century) * 100 + yy
    else:
        # The latest year ending in YY whose birthday (month, day) is not after today...
        year = today.year - (today.year - yy) % 100
        if (month, day) > (today.month, today.day) and year == today.year:
            year -= 100
        # ...and a century earlier for '+' (the person has turned 100).
        if sep == "+":
            year -= 100
    born = _birth_date(year, month, day)
    if born is None or born > today:
        raise InvalidPersonalIdentityNumber("date")
    return PersonalIdentityNumber(canonical=f"{year:04d}{six[2:]}{tail}", kind=kind, birth_date=born)


class Pseudonymizer:
    """Keyed pseudonyms for personal identity numbers: ``"<key_id>:<hex HMAC-SHA256(canonical)>"``.

    ``keys`` maps key ids to secret keys (at least 16 bytes each; 32 random bytes recommended);
    new pseudonyms use ``current_key_id``. :meth:`candidates` gives the pseudonym under every known key,
    so records stored before a key rotation can still be matched. Keys never appear in ``repr()``.
    """

    __slots__ = ("_current_key_id", "_keys")

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str) -> None:
        if current_key_id not in keys:
            raise ValueError("the current key id is not among the keys")
        for key_id, key in keys.items():
            if not key_id or ":" in key_id:
                raise ValueError("a key id must be non-empty and must not contain ':'")
            if len(key) < 16:
                raise ValueError("a pseudonym key must be at least 16 bytes")
        self._keys: dict[str, bytes] = dict(keys)
        self._current_key_id = current_key_id

    @property
    def current_key_id(self) -> str:
        """The id of the key used for new pseudonyms."""
        return self._current_key_id

    def _with_key(self, key_id: str, pin: PersonalIdentityNumber) -> str:
        digest = hmac.new(self._keys[key_id], pin.canonical.encode("ascii"), hashlib.sha256).hexdigest()
        return f"{key_id}:{digest}"

    def pseudonym(self, pin: PersonalIdentityNumber) -> str:
        """The pseudonym under the current key (what the hub stores for new records)."""
        return self._with_key(self._current_key_id, pin)

    def candidates(self, pin: PersonalIdentityNumber) -> list[str]:
        """The pseudonym under every known key, current key first, then by key id (for matching
        records written before a rotation)."""
        others = sorted(k for k in self._keys if k != self._current_key_id)
        return [self._with_key(key_id, pin) for key_id in [self._current_key_id, *others]]

    def __repr__(self) -> str:
        return f"Pseudonymizer(current_key_id={self._current_key_id!r}, key_ids={sorted(self._keys)!r})"
