"""Audit entries, and the per-organisation hash chains of the entries appended before migration 0016.

Every read or share of a child's data, every sharing decision (refusals too), every consent change and
every admin change is an :class:`AuditRecord`. Since migration 0016 an entry is appended as a plain
insert and the sealer places it in the hub's one audit log, a Merkle tree (``hub.domain.merkle``) with
signed checkpoints (``hub.domain.checkpoint``). Entries appended before were chained per *partition* (the
acting organisation): ``hash_n = sha256(hash_{n-1} || canonical_n)``, starting from a genesis hash
derived from the partition name; ``verify_chain`` still walks those chains and names the first broken
link. (They are the log's first leaves as well.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class AuditAction(StrEnum):
    """What happened. Kept close to FHIR AuditEvent's ``subtype`` use."""

    SHARING_DECISION = "sharing-decision"
    CONSENT_RECORDED = "consent-recorded"
    CONSENT_WITHDRAWN = "consent-withdrawn"
    CONSENT_READ = "consent-read"
    CONSENT_LISTED = "consent-listed"
    CONSENT_REQUESTED = "consent-requested"
    CONSENT_REQUEST_ANSWERED = "consent-request-answered"
    CONSENT_REQUEST_READ = "consent-request-read"
    NECESSITY_ASSESSMENT_RECORDED = "necessity-assessment-recorded"
    AUDIT_READ = "audit-read"
    ADMIN_CHANGE = "admin-change"
    REFERRAL_SENT = "referral-sent"
    REFERRAL_READ = "referral-read"
    REFERRAL_STATUS_CHANGED = "referral-status-changed"
    REFERRAL_DELIVERED = "referral-delivered"
    FLOWS_READ = "flows-read"
    TEAM_READ = "team-read"
    TEAM_CHANGED = "team-changed"
    PROTECTED_IDENTITY_CLEARED = "protected-identity-cleared"
    PLAN_VERSION_SENT = "plan-version-sent"
    PLAN_READ = "plan-read"
    PLAN_REVIEWED = "plan-reviewed"
    CONCERN_ANSWERED = "concern-answered"
    CONCERN_REPORTS_SEARCHED = "concern-reports-searched"
    SIP_INVITATION_SENT = "sip-invitation-sent"
    SIP_READ = "sip-meeting-read"
    SIP_CHANGED = "sip-meeting-changed"


class AuditOutcome(StrEnum):
    """FHIR AuditEvent.outcome: 0 success, 4 minor failure (a refusal), 8 serious, 12 major."""

    SUCCESS = "0"
    REFUSED = "4"


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry's content. Holds no personal data: the child appears only as a pseudonym."""

    occurred_at: datetime
    action: AuditAction
    outcome: AuditOutcome
    actor_subject: str
    actor_organisation: str
    actor_roles: tuple[str, ...]
    request_id: str | None = None
    child_pseudonym: str | None = None
    legal_basis: str | None = None
    decision_id: str | None = None
    counterpart_organisation: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    purpose: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def partition(self) -> str:
        """The acting organisation (before migration 0016, the chain the record joined)."""
        return self.actor_organisation

    def canonical(self) -> str:
        """Canonical JSON (sorted keys, no spaces, UTC ISO timestamps): what the hash covers."""
        return canonical_json(record_to_json(self))


def record_to_json(record: AuditRecord) -> dict[str, Any]:
    # Shallow on purpose: dataclasses.asdict deep-copies every value, and this runs for every audited
    # request; the result is serialised at once, never kept.
    body = {f.name: getattr(record, f.name) for f in fields(record)}
    body["details"] = dict(record.details)
    body["occurred_at"] = record.occurred_at.isoformat()
    body["action"] = record.action.value
    body["outcome"] = record.outcome.value
    body["actor_roles"] = list(record.actor_roles)
    return body


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def genesis_hash(partition: str) -> bytes:
    """The hash a partition's chain starts from."""
    return hashlib.sha256(f"hub-audit-genesis:{partition}".encode()).digest()


def next_hash(previous: bytes, canonical: str) -> bytes:
    return hashlib.sha256(previous + canonical.encode()).digest()


@dataclass(frozen=True)
class ChainLink:
    """A stored entry as the verifier sees it."""

    partition: str
    seq: int
    canonical: str
    hash: bytes


@dataclass(frozen=True)
class BrokenLink:
    """The first entry whose stored hash, order or content does not match the chain."""

    partition: str
    seq: int
    problem: str


def verify_chain(partition: str, links: Iterable[ChainLink]) -> BrokenLink | None:
    """Walk one partition's links in ``seq`` order; return the first broken link, or None if intact."""
    previous = genesis_hash(partition)
    expected_seq = 1
    for link in links:
        if link.seq != expected_seq:
            return BrokenLink(partition, expected_seq, f"entry {expected_seq} is missing (found {link.seq})")
        if next_hash(previous, link.canonical) != link.hash:
            return BrokenLink(partition, link.seq, "content does not match its hash")
        previous = link.hash
        expected_seq += 1
    return None
