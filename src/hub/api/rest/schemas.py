"""Request and response bodies shared by several routers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

EARLIEST_YEAR, LATEST_YEAR = 1900, 2200


def _within_years(value: datetime) -> datetime:
    # Year 1 at +14:00 is year 0 in UTC, which neither Python nor PostgreSQL can hold: without a bound such
    # an instant passed validation and failed in the database. No child's record is dated outside these.
    try:
        year = value.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ValueError(f"a time between the years {EARLIEST_YEAR} and {LATEST_YEAR}, with its UTC offset")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_within_years)]
"""A point in time a caller sends: with its UTC offset, and within years the hub can store and compare."""


class ChildRef(BaseModel):
    """The child, by personnummer or samordningsnummer. Validated (checksum), never stored or logged in clear."""

    model_config = ConfigDict(extra="forbid")

    personal_identity_number: str = Field(
        min_length=10,
        max_length=13,
        examples=["20150311-2383"],
        description="10 or 12 digits, with or without separator ('-', or '+' for 100 years or older)",
    )


class ProtectableChild(ChildRef):
    """The child a referral or a sharing question is about, and whether its personal data are protected."""

    protected_identity: bool = Field(
        default=False,
        description="The child has protected personal data (sekretessmarkering or skyddad folkbokföring). The hub "
        "keeps the mark for the child until an authorised organisation clears it: leaving it out later does "
        "not clear it. Identity and guardian contact data are then withheld from every recipient the policy "
        "does not name (docs/lawful-sharing.md, 'Protected identity').",
    )


class Explanation(BaseModel):
    code: str
    sv: str
    en: str
    categories: list[str] = []
    legal_basis: str | None = None
    basis_reference: str | None = None


class OrganisationRefRead(BaseModel):
    """An organisation as a team, a plan or a meeting names it."""

    model_config = ConfigDict(from_attributes=True)
    organisation_id: str
    name: str | None
    type: str | None
