"""Checking request codes against the shared vocabulary, naming every offending field."""

from __future__ import annotations

from collections.abc import Iterable

from hub.domain.errors import FieldError
from hub.domain.vocabulary import CODE_SYSTEMS, Vocabulary

SYSTEMS = CODE_SYSTEMS  # singular names (as the policy and error messages use them) → vocabulary names


def unknown_codes(vocabulary: Vocabulary, system: str, codes: Iterable[str], pointer: str) -> list[FieldError]:
    """One FieldError per code not in ``system`` (``pointer`` + ``/index`` for lists)."""
    known = vocabulary.codes(SYSTEMS[system])
    return [
        FieldError(f"{pointer}/{i}", f"{code!r} is not a {system} code in the shared vocabulary", "unknown-code")
        for i, code in enumerate(codes)
        if code not in known
    ]
