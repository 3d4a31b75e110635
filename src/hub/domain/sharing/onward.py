"""Categories no decision permits, whatever basis is offered: the answer to a report of concern goes to the
reporter through the hub alone (``hub.domain.concern``) and never travels onward."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from hub.domain.concern import NEVER_ONWARD
from hub.domain.sharing.evaluation import make_reason
from hub.domain.sharing.evaluation import sorted_categories as _cats
from hub.domain.sharing.facts import Decision, ShareRequest


def never_onward(request: ShareRequest, decide: Callable[[ShareRequest], Decision]) -> Decision:
    """``decide`` on the request less every category in :data:`NEVER_ONWARD`, those denied with their reason
    first (no remedy: nothing makes them lawful to share)."""
    held = request.requested_categories & NEVER_ONWARD
    if not held:
        return decide(request)
    rest = decide(request.model_copy(update={"requested_categories": request.requested_categories - held}))
    reason = make_reason("category-never-shared-onward", None, None, _cats(held))
    if not rest.allowed:  # nothing else, or nothing else allowed: the whole request is refused
        reasons = tuple(r for r in rest.reasons if r.code != "no-categories-requested")
        return dataclasses.replace(
            rest, denied_categories=_cats(request.requested_categories), reasons=(reason, *reasons)
        )
    denied = _cats(frozenset(rest.denied_categories) | held)
    return dataclasses.replace(rest, denied_categories=denied, reasons=(*rest.reasons, reason))
