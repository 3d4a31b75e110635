"""Pages of registry listings and their opaque cursors."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hub.domain.errors import FieldError, InvalidInput

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def bad_cursor() -> InvalidInput:
    return InvalidInput("The cursor is not one this hub issued.", errors=[FieldError("cursor", "invalid cursor")])


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise bad_cursor() from None
    if not isinstance(payload, dict):
        raise bad_cursor()
    return payload
