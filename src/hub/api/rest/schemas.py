"""Request and response bodies shared by several routers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ChildRef(BaseModel):
    """The child, by personnummer or samordningsnummer. Validated (checksum), never stored or logged in clear."""

    model_config = ConfigDict(extra="forbid")

    personal_identity_number: str = Field(
        min_length=10,
        max_length=13,
        examples=["20150311-2383"],
        description="10 or 12 digits, with or without separator ('-', or '+' for 100 years or older)",
    )


class Explanation(BaseModel):
    code: str
    sv: str
    en: str
    categories: list[str] = []
    legal_basis: str | None = None
    basis_reference: str | None = None
