"""Validating a parsed data file into its document model, checksums and version order."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import (
    ValidationError,
)

from hub.domain.errors import InvalidInput
from hub.domain.vocabulary.base import SEMVER, InvalidVocabulary, VocabularyError
from hub.domain.vocabulary.codes import _DOCUMENT, VocabularyDocument


def checksum_of(content: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` over the canonical JSON of a parsed file (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_document(content: Mapping[str, Any], *, source: str) -> VocabularyDocument:
    """Validate one parsed file. Raises :class:`InvalidVocabulary` naming ``source`` and the field."""
    try:
        checksum_of(content)
    except (TypeError, ValueError) as exc:
        raise InvalidVocabulary(f"{source}: not plain JSON data ({exc}); quote dates", field="/") from exc
    try:
        return _DOCUMENT.validate_python(content)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc and loc[0] == content.get("kind"):
            loc = loc[1:]
        pointer, message = "/" + "/".join(loc), first["msg"].removeprefix("Value error, ")
        if inner := re.match(r"^(/\S*): (.*)$", message, re.S):  # a validator naming a nested field
            pointer, message = pointer.rstrip("/") + inner[1], inner[2]
        raise InvalidVocabulary(
            f"{source}: {pointer}: {message} ({exc.error_count()} error(s))", field=pointer
        ) from exc


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key for semantic versions (a pre-release sorts before its release)."""
    m = SEMVER.match(version)
    if not m:
        raise ValueError(f"not a semantic version: {version!r}")
    return int(m[1]), int(m[2]), int(m[3]), 0 if m[4] else 1, m[4] or ""


@dataclass(frozen=True)
class LoadedDocument:
    """A validated document with the checksum of its file and where it came from."""

    document: VocabularyDocument
    checksum: str
    source: str


class InvalidRequest(VocabularyError, InvalidInput):
    """A request about the vocabulary is wrong (unknown language, a system that is not a variant…)."""

    code = "invalid-vocabulary-request"
