"""The hub's tables. Migrations in ``migrations/`` create them; these classes only map them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, func
from sqlmodel import Field, SQLModel


class Organisation(SQLModel, table=True):
    """A unit that sends or receives: a school, a BVC, a BUP clinic, a social-services unit."""

    __tablename__ = "organisation"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    type: str = Field(max_length=64, index=True)
    municipality_code: str | None = Field(default=None, max_length=4, index=True)
    region_code: str = Field(max_length=2)
    parent_id: str | None = Field(default=None, foreign_key="organisation.id", max_length=64)
    hsa_id: str | None = Field(default=None, max_length=64)  # unique; Inera's format (hub.domain.hsa)
    organisation_number: str | None = Field(default=None, max_length=10)  # ten digits (migration 0013)
    # A deactivated organisation keeps its history but its tokens are refused (migration 0008).
    active: bool = True
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))
