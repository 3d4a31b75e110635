"""The legal basis of a plan share again at send time, as for a referral: the member receives only the
sections whose category its basis still covers when the hub delivers (a consent withdrawn or expired
since the version was sent takes its sections with it). A decision is recorded, with its audit entry,
only when the outcome narrowed; a delivery that goes as decided adds none."""

from __future__ import annotations

from dataclasses import dataclass

from hub.db import plans as db
from hub.domain.plans import Withheld, categories_of, split
from hub.domain.principal import Principal, Role
from hub.runtime import Runtime
from hub.services.context import Actor
from hub.services.plans.shares import PLAN_PURPOSE, section_categories
from hub.services.sharing import ShareQuestion, decide_share, explanation


@dataclass(frozen=True)
class Rechecked:
    """The sections a share may still carry, every section withheld (those decided when the version was
    sent, and those the basis no longer covers), and what would make the rest lawful."""

    sections: tuple[str, ...]
    withheld: tuple[Withheld, ...]
    remedies: list[object]


async def recheck(runtime: Runtime, share: db.StoredShare, author: str, child: dict[str, str]) -> Rechecked:
    """``share`` decided again now (see the module)."""
    categories = section_categories(runtime.vocabulary)
    requested = categories_of(share.sections, categories)
    hub_actor = Actor(
        Principal(subject="hub:delivery", organisation_id=author, roles=frozenset({Role.SYSTEM})),
        now=runtime.clock(),  # the law, the policy and the consents in force when the hub delivers
    )
    recorded = await decide_share(
        actor=hub_actor,
        question=ShareQuestion(
            to_organisation=share.organisation,
            personal_identity_number=child["personal_identity_number"],
            purpose=PLAN_PURPOSE,
            data_categories=sorted(requested),
        ),
        runtime=runtime,
        dry_run=False,
        record_if=lambda decision: not requested <= set(decision.permitted_categories),
    )
    sections, lost = split(share.sections, categories, frozenset(recorded.decision.permitted_categories))
    remedies = explanation(recorded.decision)["remedies"]
    kept = list(remedies) if isinstance(remedies, list) else []
    return Rechecked(sections, (*share.withheld, *lost), kept)
