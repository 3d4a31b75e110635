"""The request hash a replay is compared with: the same as the hub has always computed (stored hashes of
referrals sent before a change must still match their replays)."""

from __future__ import annotations

import hashlib
import json

import pytest

from hub.services.referrals.draft import LocalCodes, ReferralDraft, Target, hash_request


def _as_before(draft: ReferralDraft, child_pseudonym: str) -> str:
    """The hash as the hub computed it up to December 2026 (encoded, decoded, encoded again)."""
    body = {**json.loads(json.dumps(draft, default=lambda o: o.__dict__)), "personal_identity_number": None}
    body["child"] = child_pseudonym
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


DRAFTS = [
    ReferralDraft(
        kind="remiss",
        target=Target(organisation_id="region-bup"),
        personal_identity_number="20120101-1234",
        data_categories=["identity"],
    ),
    ReferralDraft(
        kind="orosanmalan",
        target=Target(organisation_type="socialtjanst", municipality_code="1884"),
        personal_identity_number="201201011234",
        data_categories=["school-situation", "identity", "concern-text"],
        dimensions=["healthy", "safe"],
        local_codes=LocalCodes("variant-behovskompassen", ["a", "b"]),
        trappan_step=2,
        concern_text='Åsa är orolig — \u2603 "citat" \\ och \n ny rad',
        information={"z": {"b": [1, 2.5, -0.0, 1e-7, 10**30], "a": None}, "å": True, "a": "ü", "m": []},
        legal_basis="consent",
        basis_reference="c-1",
        protected_identity=True,
    ),
]


@pytest.mark.parametrize("draft", DRAFTS)
def test_the_request_hash_is_what_it_always_was(draft: ReferralDraft) -> None:
    for pseudonym in ("p-1", "ö"):
        assert hash_request(draft, pseudonym) == _as_before(draft, pseudonym)
    assert hash_request(draft, "p-1") != hash_request(draft, "p-2")
