"""Turning a personal identity number into the pseudonyms the hub stores and matches on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from hub.domain.errors import FieldError, InvalidInput
from hub.domain.identity import InvalidPersonalIdentityNumber, Pseudonymizer, parse_personal_identity_number


@dataclass(frozen=True)
class Child:
    """A child as services see it: the current pseudonym, every matching pseudonym, and the age."""

    pseudonym: str
    candidates: tuple[str, ...]
    age: int


def identify_child(pin: str, *, pseudonymizer: Pseudonymizer, today: date, pointer: str) -> Child:
    """Validate strictly; a bad number is a 422 naming the field (never echoing the number)."""
    try:
        parsed = parse_personal_identity_number(pin, today=today)
    except InvalidPersonalIdentityNumber as exc:
        raise InvalidInput(
            "The personal identity number is not valid.",
            errors=[FieldError(pointer, str(exc), f"personal-identity-number-{exc.reason}")],
        ) from None
    return Child(
        pseudonym=pseudonymizer.pseudonym(parsed),
        candidates=tuple(pseudonymizer.candidates(parsed)),
        age=parsed.age_on(today),
    )


def child_identity(pin: str, *, today: date) -> dict[str, str]:
    """The child's identity as a receiving system needs it (sealed before it is stored): the canonical
    number and the birth date. ``pin`` is already validated by :func:`identify_child`."""
    parsed = parse_personal_identity_number(pin, today=today)
    return {"personal_identity_number": parsed.canonical, "birth_date": parsed.birth_date.isoformat()}
