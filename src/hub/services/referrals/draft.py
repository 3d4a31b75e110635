"""A referral as the sender drafts it, and its check against the vocabulary before anything is decided."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from hub.domain.errors import FieldError, InvalidInput
from hub.domain.referrals import CONCERN_TEXT
from hub.domain.vocabulary import UnknownCode, Vocabulary
from hub.services.referrals.derived import derived_for


@dataclass(frozen=True)
class Target:
    organisation_id: str | None = None
    service_id: str | None = None
    organisation_type: str | None = None
    municipality_code: str | None = None


@dataclass(frozen=True)
class LocalCodes:
    system: str  # a wheel variant, e.g. variant-behovskompassen
    codes: list[str]


@dataclass(frozen=True)
class ReferralDraft:
    kind: str
    target: Target
    personal_identity_number: str
    data_categories: list[str]
    dimensions: list[str] = field(default_factory=list)
    local_codes: LocalCodes | None = None
    trappan_step: int | None = None
    concern_text: str | None = None
    information: dict[str, Any] = field(default_factory=dict)
    legal_basis: str | None = None
    basis_reference: str | None = None
    protected_identity: bool = False  # the sender marks the child's identity protected (sticky in the hub)


def hash_request(draft: ReferralDraft, child_pseudonym: str) -> str:
    # The number itself is left out (it is matched through its pseudonym), so the hash cannot be tested
    # against guessed numbers.
    # One encoding, the nested dataclasses as their fields: the same text (and hash) as the encode, decode
    # and encode again it replaces, at a third of the cost (a replay compares it with stored hashes).
    body = {**draft.__dict__, "personal_identity_number": None, "child": child_pseudonym}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, default=_fields)
    return hashlib.sha256(text.encode()).hexdigest()


def _fields(value: object) -> dict[str, Any]:
    return value.__dict__


def validate_draft(draft: ReferralDraft, vocabulary: Vocabulary) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Every code against the vocabulary, and what the referral carries against what it declares.
    Returns the concern's canonical dimensions and local codes (translated through the crosswalk)."""
    derived = derived_for(vocabulary)
    errors = derived.unknown_codes("referral-kind", [draft.kind], "/kind")
    errors += derived.unknown_codes("data-category", draft.data_categories, "/data_categories")
    errors += derived.unknown_codes("wellbeing-indicator", draft.dimensions, "/concern/dimensions")
    declared = set(draft.data_categories)
    errors += [
        FieldError(f"/information/{key}", f"{key!r} is not among the referral's data_categories", "undeclared-category")
        for key in draft.information
        if key not in declared
    ]
    if draft.concern_text and CONCERN_TEXT not in declared:
        errors.append(
            FieldError("/concern/text", "free text needs the data category concern-text", "undeclared-category")
        )
    canonical = list(dict.fromkeys(draft.dimensions))
    local: list[dict[str, str]] = []
    if draft.local_codes is not None:
        try:
            source, matches = derived.translate(draft.local_codes.system, draft.local_codes.codes)
        except UnknownCode as exc:
            errors.append(FieldError(f"/concern/local_codes{exc.field}", str(exc), "unknown-code"))
        except KeyError:
            errors.append(
                FieldError("/concern/local_codes/system", "not a wheel variant of the vocabulary", "unknown-code")
            )
        else:
            local = [{"system": source, "code": c} for c in draft.local_codes.codes]
            canonical += [code for code in matches if code not in canonical]
    if errors:
        raise InvalidInput(f"{len(errors)} field(s) of the referral are not valid.", errors=_scalar(errors))
    wheel_url, display = derived.wheel
    return [{"system": wheel_url, "code": c, "display": display.get(c, c)} for c in canonical], local


def _scalar(errors: list[FieldError]) -> list[FieldError]:
    return [FieldError("/kind", e.message, e.code) if e.pointer == "/kind/0" else e for e in errors]
