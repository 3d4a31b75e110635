"""Benchmark: the lawful-sharing decision engine in process, on one core.

A child with five consents of which exactly one matches the share (the others: another recipient,
another purpose, expired, withdrawn), both guardians of a joint custody agreeing, a 16-year-old child
who agreed too. Measures ``decide()`` only: the request and the facts are built once, as a service would
have them after loading. Target: ≥ 50,000 decisions/s.

    python -m bench decisions [--seconds 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hub.domain.policy import Policy
from hub.domain.sharing import (
    Consent,
    Decision,
    Grantor,
    InformationGiven,
    Party,
    PartyScope,
    ShareRequest,
    decide,
)

TARGET_PER_SECOND = 50_000
CHILD = "k1:" + "ab" * 32
AT = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
SCHOOL = Party(organisation_id="kumla-skola-1", organisation_type="grundskola")
BUP = Party(organisation_id="region-bup-orebro", organisation_type="bup")


def _consent(
    consent_id: str,
    *,
    to_types: frozenset[str] = frozenset({"bup"}),
    purposes: frozenset[str] = frozenset({"remiss"}),
    valid_from: datetime = AT - timedelta(days=30),
    withdrawn_at: datetime | None = None,
) -> Consent:
    return Consent(
        id=consent_id,
        child_pseudonym=CHILD,
        recording_organisation_id=SCHOOL.organisation_id,
        grantors=(
            Grantor(role="guardian", reference="guardian-1"),
            Grantor(role="guardian", reference="guardian-2"),
            Grantor(role="child", reference="child"),
        ),
        guardian_count=2,
        data_categories=frozenset({"identity", "guardians-contact", "school-situation", "wellbeing-assessment"}),
        from_parties=PartyScope(organisation_types=frozenset({"grundskola", "elevhalsa"})),
        to_parties=PartyScope(organisation_types=to_types),
        purposes=purposes,
        valid_from=valid_from,
        valid_until=valid_from + timedelta(days=300),
        information_given=InformationGiven(language="sv", form="written"),
        evidence_reference="journal-doc-4711",
        withdrawn_at=withdrawn_at,
        withdrawn_by=None if withdrawn_at is None else "guardian-1",
        withdrawal_reason=None if withdrawn_at is None else "changed their mind",
    )


def scenario() -> tuple[ShareRequest, list[Consent], Policy]:
    """The benchmark's facts: one request, five consents (one matching), the default policy."""
    consents = [
        _consent(
            "c-01",
            to_types=frozenset({"socialtjanst-oppenvard"}),
            purposes=frozenset({"samverkansforfragan"}),
        ),
        _consent("c-02", purposes=frozenset({"sip-kallelse"})),
        _consent("c-03", valid_from=AT - timedelta(days=400)),  # expired
        _consent("c-04"),  # the one that matches
        _consent("c-05", withdrawn_at=AT - timedelta(days=1)),
    ]
    request = ShareRequest(
        from_party=SCHOOL,
        to_party=BUP,
        child_pseudonym=CHILD,
        child_age=16,
        purpose="remiss",
        requested_categories=frozenset({"identity", "guardians-contact", "school-situation"}),
        at=AT,
    )
    return request, consents, Policy()


def measure(seconds: float) -> tuple[int, float, Decision]:
    """Run ``decide`` for about ``seconds``; return (decisions, elapsed seconds, last decision)."""
    request, consents, policy = scenario()
    decision = decide(request, consents=consents, assessments=(), policy=policy)
    count, batch = 0, 2_000
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            decision = decide(request, consents=consents, assessments=(), policy=policy)
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start, decision


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m bench decisions``; exit status 1 if below target."""
    parser = argparse.ArgumentParser(prog="python -m bench decisions", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to measure (default 3)")
    args = parser.parse_args(argv)
    count, elapsed, decision = measure(args.seconds)
    assert decision.allowed and decision.basis_reference == "c-04", decision
    rate = count / elapsed
    print(f"decide(): {rate:,.0f} decisions/s ({count:,} in {elapsed:.2f} s, one core, 5 consents, 1 matching)")
    print(f"target {TARGET_PER_SECOND:,}/s: {'met' if rate >= TARGET_PER_SECOND else 'NOT met'}")
    return 0 if rate >= TARGET_PER_SECOND else 1


if __name__ == "__main__":
    raise SystemExit(main())
