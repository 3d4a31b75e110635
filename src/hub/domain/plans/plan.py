"""The ``ChildPlan`` aggregate: a child's plan versions, who may write the next one, who receives which
sections of a version, and reviews of a version (see the package's docstring)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from hub.domain.errors import NotFound, NotPermitted, PreconditionFailed, PreconditionRequired, StateConflict
from hub.domain.plans.sections import Withheld, split
from hub.domain.teams import Team

ShareKind = Literal["plan-version", "plan-notice"]


@dataclass
class PlanVersion:
    """One version of the child's plan: its number (1, 2, …), its author (the responsible organisation when
    it was written), the sections it holds and its schema version. The content itself is sealed in
    storage; once the retention period has passed only this metadata remains (``purged_at``)."""

    id: uuid.UUID
    number: int
    author: str
    schema_version: str
    sections: tuple[str, ...]
    created_at: datetime
    purged_at: datetime | None = None

    @property
    def etag(self) -> str:
        """The version's entity tag, which the next version's ``If-Match`` must carry."""
        return f'"{self.id}"'

    def public(self) -> dict[str, Any]:
        return {"version": self.number, "etag": self.etag, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class Share:
    """What one member receives of a version: the sections its legal basis covers (``plan-version``), or,
    with none, a notice that a plan exists and whom to ask (``plan-notice``)."""

    organisation: str
    sections: tuple[str, ...]
    withheld: tuple[Withheld, ...]

    @property
    def kind(self) -> ShareKind:
        return "plan-version" if self.sections else "plan-notice"


@dataclass(frozen=True)
class Review:
    """A member's review of a version against the five evaluation questions; told to the version's author."""

    id: uuid.UUID
    version_id: uuid.UUID
    organisation: str
    answers: dict[str, Any]
    created_at: datetime
    notify: str | None  # the organisation whose system hears of it (None: the author reviewed its own)


@dataclass
class ChildPlan:
    """A child's plan: its versions, on the child's team."""

    team: Team
    versions: list[PlanVersion] = field(default_factory=list)
    added: list[PlanVersion] = field(default_factory=list)

    def current(self) -> PlanVersion | None:
        return max(self.versions, key=lambda v: v.number, default=None)

    def member_or_404(self, organisation: str, now: datetime) -> None:
        if not self.team.is_member(organisation, now):
            raise NotFound("No plan for this child that the organisation may see.")

    def version(self, number: int, organisation: str, now: datetime) -> PlanVersion:
        """A version, for a current member of the team; 404 for anyone else and for no such version."""
        self.member_or_404(organisation, now)
        found = next((v for v in self.versions if v.number == number), None)
        if found is None:
            raise NotFound("No such plan version.")
        return found

    def _check_author(self, by: str, now: datetime) -> None:
        """The responsible organisation writes the plan: the lead professional, or the named person while
        there is none. A team with neither has no one to write it (409 saying what is missing)."""
        self.member_or_404(by, now)
        responsible = self.team.responsible(now)
        if responsible.organisation is None:
            raise StateConflict(
                "The child's team has no lead professional and no named person: appoint one before a plan.",
                current={"missing": ["named-person", "lead-professional"]},
            )
        if responsible.organisation != by:
            # A member sees the team, and so who is responsible: a 403 tells it nothing new.
            raise NotPermitted(
                "The lead professional (or, while there is none, the named person) sends the child's plan."
            )

    def _check_precondition(self, if_match: str | None) -> None:
        current = self.current()
        if current is None:
            return  # the first version: nothing to overwrite (an If-Match, if sent, is not checked)
        if if_match is None:
            raise PreconditionRequired("A new plan version needs If-Match with the current version's ETag.")
        tags = {t.strip().removeprefix("W/") for t in if_match.split(",")}
        if current.etag not in tags and "*" not in tags:
            raise PreconditionFailed(
                f"The plan has changed: version {current.number} is current; send its ETag.",
                current=current.public(),
            )

    def add_version(
        self, by: str, *, sections: tuple[str, ...], schema_version: str, if_match: str | None, now: datetime
    ) -> PlanVersion:
        """The responsible organisation sends the next version, stating the one it replaces (``If-Match``)."""
        self._check_author(by, now)
        self._check_precondition(if_match)
        current = self.current()
        made = PlanVersion(uuid.uuid4(), (current.number if current else 0) + 1, by, schema_version, sections, now)
        self.versions.append(made)
        self.added.append(made)
        return made

    def recipients(self, version: PlanVersion, now: datetime) -> list[str]:
        """Every current member of the team but the version's author, each decided on its own."""
        return sorted(o for o in self.team.member_roles(now) if o != version.author)

    @staticmethod
    def share(
        organisation: str, version: PlanVersion, categories: Mapping[str, str], permitted: frozenset[str]
    ) -> Share:
        """What ``organisation`` receives of ``version`` given the categories its legal basis permits."""
        sections, withheld = split(version.sections, categories, permitted)
        return Share(organisation, sections, withheld)

    def review(self, by: str, number: int, answers: dict[str, Any], now: datetime) -> Review:
        """A current member reviews a version; the version's author hears of it."""
        version = self.version(number, by, now)
        notify = version.author if version.author != by else None
        return Review(uuid.uuid4(), version.id, by, answers, now, notify)
