"""The one error tree of the hub.

Every error the domain and the services raise on purpose derives from :class:`HubError`. They are
grouped by what the caller can do about it; the API maps each class to an HTTP status and a stable
problem ``type`` in one table (``hub.api.problems``), so the domain never learns HTTP::

    HubError
    ├── InvalidInput            the request is wrong; fix it and send again           (422)
    ├── Unauthenticated         no or bad credentials                                  (401)
    ├── NotPermitted            authenticated, but this role may not do this          (403)
    ├── SharingDenied           no legal basis allows this share; reasons + remedies  (403)
    ├── NotFound                does not exist, or the caller may not know it exists  (404)
    ├── Conflict                clashes with current state (transition, idempotency)  (409)
    │   ├── InvalidTransition   a status change the lifecycle does not allow now
    │   └── StateConflict       carries the state it clashes with (``current``)
    │       └── PreconditionFailed  a stale ``If-Match``: ``current`` holds the ETag now   (412)
    ├── PreconditionRequired    an update without ``If-Match``                         (428)
    ├── RateLimited             too many requests; wait ``retry_after`` seconds        (429)
    └── Unavailable             a dependency is down; retry later                     (503)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One offending field: a JSON pointer into the request (``/child/pin``) or a parameter name."""

    pointer: str
    message: str
    code: str = "invalid"


class HubError(Exception):
    """Root of every deliberate hub error. ``detail`` is for a human and never holds personal data."""

    code: str = "error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: list[FieldError] = list(errors or [])


class InvalidInput(HubError):
    """The request is malformed or violates the vocabulary; ``errors`` names every offending field."""

    code = "invalid-input"


class Unauthenticated(HubError):
    """Missing, malformed, expired or wrongly signed credentials."""

    code = "unauthenticated"


class NotPermitted(HubError):
    """The caller is known but its role does not allow the operation."""

    code = "forbidden"


class NotFound(HubError):
    """The thing does not exist, or the caller's organisation may not learn that it exists."""

    code = "not-found"


class Conflict(HubError):
    """The request clashes with the current state (an invalid transition, a reused idempotency key)."""

    code = "conflict"


class Gone(HubError):
    """The thing existed but can no longer be acted on (a consent request past its answer period)."""

    code = "gone"


class InvalidTransition(Conflict):
    """A status change the lifecycle does not allow now; ``allowed_transitions`` are the statuses the
    asking party may move the referral to from where it is (empty when the status is final)."""

    def __init__(self, detail: str, *, allowed_transitions: list[str]) -> None:
        super().__init__(detail)
        self.allowed_transitions = list(allowed_transitions)


class StateConflict(Conflict):
    """The request clashes with a state the caller may see, sent back as ``current``: an offer already
    answered or withdrawn, the assignment whose period the request's would overlap."""

    def __init__(self, detail: str, *, current: dict[str, Any]) -> None:
        super().__init__(detail)
        self.current = dict(current)


class PreconditionFailed(StateConflict):
    """An update made against a version that is no longer the current one (a stale ``If-Match``);
    ``current`` names the current version and its ETag."""

    code = "precondition-failed"


class PreconditionRequired(HubError):
    """An update of something versioned sent without ``If-Match``: the caller must say which version it
    changes, so that two writers never overwrite each other unseen."""

    code = "precondition-required"


class RateLimited(HubError):
    """Too many requests of one kind from one caller; the same request is answered after ``retry_after``
    seconds (sent as ``Retry-After``)."""

    code = "rate-limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(HubError):
    """A dependency (the database, a key server) is unreachable; the same request may succeed later."""

    code = "unavailable"


@dataclass(frozen=True)
class Explanation:
    """A reason or remedy a person reads, in Swedish and English."""

    code: str
    sv: str
    en: str


class SharingDenied(HubError):
    """No legal basis allows the proposed share. Carries the engine's reasons and what would help."""

    code = "sharing-denied"

    def __init__(
        self,
        detail: str,
        *,
        reasons: list[Explanation] | None = None,
        remedies: list[Explanation] | None = None,
        decision_id: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.reasons = list(reasons or [])
        self.remedies = list(remedies or [])
        self.decision_id = decision_id


__all__ = [
    "Conflict",
    "Explanation",
    "FieldError",
    "HubError",
    "InvalidInput",
    "NotFound",
    "NotPermitted",
    "RateLimited",
    "SharingDenied",
    "StateConflict",
    "Unauthenticated",
    "Unavailable",
]
