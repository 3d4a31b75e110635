"""HSA-ids and Swedish organisation numbers: the identifiers health and care in Sweden already uses.

An **HSA-id** names an object in Inera's catalogue service HSA (a care unit, a professional, a
function). Inera's format, as quoted in the openEHR Sweden guide "HSA-identitet och
Organisationsnummer" (https://openehr.atlassian.net/wiki/spaces/healthmod/pages/1922990156)::

    SE<the catalogue owner's organisation number, 10 digits, no hyphen>-<A-Z, a-z, 0-9; at least one>

with no å, ä, ö or ``@`` and at most 31 characters in all (example: ``SE2321000131-P000000123457``).

An **organisation number** (organisationsnummer, SKV 709) is ten digits whose last one is a Luhn check
digit over the first nine; its third digit is never below 2, so it cannot be mistaken for a
personnummer (https://oid-base.com/get/1.3.7). It is written ``NNNNNN-NNNN`` or without the hyphen; the
hub stores the ten digits.

The FHIR identifier systems are those of HL7 Sweden's base profiles
(http://hl7.se/fhir/ig/base/, SEBaseOrganization and SEBasePatient) and, for the organisation number,
the Swedish organisation catalogue guide on simplifier.net (``urn:oid:2.5.4.97``).

Plain Python: :class:`InvalidHsaId` and :class:`InvalidOrganisationNumber` are ``ValueError``s (so a
pydantic validator turns them into a 422 at the field) carrying a stable ``reason`` and a message that
says what is wrong; :func:`require_hsa_id` raises the hub's :class:`~hub.domain.errors.InvalidInput`
with the offending field for callers outside pydantic. HSA-ids are not personal data in the sense of a
personnummer (they are published in the catalogue), so messages may not echo them anyway: a token's
or a file's value is reported by its field, never repeated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from hub.domain.errors import FieldError, InvalidInput
from hub.domain.identity import luhn_check_digit

__all__ = [
    "HSA_ID_SYSTEM",
    "ORGANISATION_NUMBER_SYSTEM",
    "PERSONNUMMER_SYSTEM",
    "SAMORDNINGSNUMMER_SYSTEM",
    "HsaId",
    "HsaIdReason",
    "InvalidHsaId",
    "InvalidOrganisationNumber",
    "OrganisationNumberReason",
    "hsa_id_of_subject",
    "parse_hsa_id",
    "parse_organisation_number",
    "professional_reference_problem",
    "require_hsa_id",
]

HSA_ID_SYSTEM = "urn:oid:1.2.752.29.4.19"
"""HL7 Sweden base profiles: the HSA-id of any catalogue object (organisation, unit, person)."""

PERSONNUMMER_SYSTEM = "http://electronichealth.se/identifier/personnummer"
"""HL7 Sweden base profiles (SEBasePatient): a personnummer."""

SAMORDNINGSNUMMER_SYSTEM = "http://electronichealth.se/identifier/samordningsnummer"
"""HL7 Sweden base profiles (SEBasePatient): a samordningsnummer."""

ORGANISATION_NUMBER_SYSTEM = "urn:oid:2.5.4.97"
"""Organisation identifier (organisationsnummer), as the Swedish organisation catalogue guide uses it."""

MAX_HSA_ID_LENGTH = 31

HsaIdReason = Literal["type", "length", "country", "organisation-number", "check-digit", "suffix"]
"""Why an HSA-id was refused: not text, too long, the ``SE`` prefix, the organisation number's shape or
its check digit, or the suffix after the hyphen."""

OrganisationNumberReason = Literal["format", "group", "check-digit"]
"""Why an organisation number was refused: not ten digits, a third digit below 2, or the check digit."""

HSA_PREFIX = "hsa:"
"""How a subject or a professional's reference says it is an HSA-id (``hsa:SE2321000016-ABCD``)."""

# A reference that starts like an HSA-id (SE and a digit) is taken to be one: a typo in it is refused rather
# than kept as some other kind of id no one can look up.
_LOOKS_LIKE_HSA_ID = re.compile(r"SE[0-9]", re.ASCII)
_ORG_NUMBER = re.compile(r"([0-9]{6})-?([0-9]{4})", re.ASCII)
_SUFFIX = re.compile(r"[A-Za-z0-9]+", re.ASCII)


class InvalidHsaId(ValueError):
    """An HSA-id that does not follow Inera's format; ``reason`` says which part is wrong."""

    def __init__(self, reason: HsaIdReason, message: str) -> None:
        super().__init__(message)
        self.reason: HsaIdReason = reason
        self.message = message


class InvalidOrganisationNumber(ValueError):
    """An organisation number that is not ten digits with a valid check digit."""

    def __init__(self, reason: OrganisationNumberReason, message: str) -> None:
        super().__init__(message)
        self.reason: OrganisationNumberReason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class HsaId:
    """A valid HSA-id: ``value`` as written, the catalogue owner's ``organisation_number`` and the
    ``suffix`` after the hyphen that names the object within that catalogue."""

    value: str
    organisation_number: str
    suffix: str

    def __str__(self) -> str:
        return self.value


def parse_organisation_number(text: object) -> str:
    """The ten digits of a valid organisation number (``NNNNNN-NNNN`` or ``NNNNNNNNNN``).

    Raises :class:`InvalidOrganisationNumber` saying whether the shape, the group digit or the check
    digit is wrong.
    """
    match = _ORG_NUMBER.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidOrganisationNumber(
            "format", "An organisation number is ten digits, written NNNNNN-NNNN or NNNNNNNNNN."
        )
    digits = match.group(1) + match.group(2)
    return _checked_organisation_number(digits)


def _checked_organisation_number(digits: str) -> str:
    if int(digits[2]) < 2:
        raise InvalidOrganisationNumber(
            "group",
            "The third digit of an organisation number is 2 or more (lower would be a personnummer).",
        )
    if luhn_check_digit(digits[:9]) != int(digits[9]):
        raise InvalidOrganisationNumber("check-digit", "The organisation number's check digit is wrong.")
    return digits


def parse_hsa_id(text: object) -> HsaId:
    """A valid :class:`HsaId`, or :class:`InvalidHsaId` naming the first part that is wrong.

    Checked in the order a person reads it: the length, the country code ``SE``, the ten-digit
    organisation number (shape, then group digit and check digit), the hyphen and the suffix.
    """
    if not isinstance(text, str):
        raise InvalidHsaId("type", "An HSA-id is a text such as SE2321000131-P000000123457.")
    if not text or len(text) > MAX_HSA_ID_LENGTH:
        raise InvalidHsaId("length", f"An HSA-id has between 14 and {MAX_HSA_ID_LENGTH} characters.")
    if not text.startswith("SE"):
        raise InvalidHsaId("country", "An HSA-id starts with the country code SE.")
    digits = text[2:12]
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise InvalidHsaId(
            "organisation-number",
            "After SE, an HSA-id has the catalogue owner's organisation number: ten digits, no hyphen.",
        )
    try:
        _checked_organisation_number(digits)
    except InvalidOrganisationNumber as error:
        reason: HsaIdReason = "check-digit" if error.reason == "check-digit" else "organisation-number"
        raise InvalidHsaId(reason, f"In the HSA-id: {error.message}") from None
    rest = text[12:]
    if not rest.startswith("-") or _SUFFIX.fullmatch(rest[1:]) is None:
        raise InvalidHsaId(
            "suffix",
            "After the organisation number, an HSA-id has a hyphen and at least one letter A-Z/a-z or "
            "digit (no å, ä, ö or @).",
        )
    return HsaId(value=text, organisation_number=digits, suffix=rest[1:])


def require_hsa_id(text: object, *, field: str) -> HsaId:
    """:func:`parse_hsa_id` for callers outside pydantic: a bad value raises
    :class:`~hub.domain.errors.InvalidInput` with ``field`` (a JSON pointer or parameter name) and the
    reason as its code, so the API answers 422 at that field."""
    try:
        return parse_hsa_id(text)
    except InvalidHsaId as error:
        raise InvalidInput(
            "The HSA-id is not valid.",
            errors=[FieldError(pointer=field, message=error.message, code=f"hsa-id-{error.reason}")],
        ) from None


def professional_reference_problem(reference: str) -> InvalidHsaId | None:
    """What is wrong with a professional's reference where it is an HSA-id, else None.

    A reference is an HSA-id when it says so (``hsa:<id>``) or starts like one (``SE`` and a digit); any
    other reference (a local id) is the source system's business and passes unchecked.
    """
    value = reference.removeprefix(HSA_PREFIX)
    if value == reference and _LOOKS_LIKE_HSA_ID.match(reference) is None:
        return None
    try:
        parse_hsa_id(value)
    except InvalidHsaId as error:
        return error
    return None


def hsa_id_of_subject(subject: str | None) -> str | None:
    """The HSA-id a caller's subject is (``hsa:<id>`` or the id itself), else None: a professional
    signed in through a federated issuer is named by it in FHIR (an AuditEvent agent)."""
    if not subject:
        return None
    value = subject.removeprefix(HSA_PREFIX)
    try:
        return parse_hsa_id(value).value
    except InvalidHsaId:
        return None
