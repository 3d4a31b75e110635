"""Secrets the services need, read from settings (or made and kept in the data directory in dev mode)."""

from __future__ import annotations

import base64
import os
import secrets

from hub.config import Settings
from hub.domain.identity import Pseudonymizer


class KeyConfigurationError(ValueError):
    """The configured keys are missing or malformed; the hub refuses to start."""


def pseudonymizer(settings: Settings) -> Pseudonymizer:
    if settings.pseudonym_keys is not None:
        keys: dict[str, bytes] = {}
        for item in settings.pseudonym_keys.get_secret_value().split(","):
            key_id, sep, encoded = item.strip().partition(":")
            if not sep:
                raise KeyConfigurationError("HUB_PSEUDONYM_KEYS entries look like keyid:base64key")
            try:
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise KeyConfigurationError(f"HUB_PSEUDONYM_KEYS: key {key_id!r} is not base64") from None
        current = settings.pseudonym_key_id or next(iter(keys))
        try:
            return Pseudonymizer(keys, current)
        except ValueError as exc:
            raise KeyConfigurationError(f"HUB_PSEUDONYM_KEYS: {exc}") from None
    if not settings.dev_mode:
        raise KeyConfigurationError("Set HUB_PSEUDONYM_KEYS (dev mode makes a key; production must not).")
    path = settings.dev_pseudonym_key_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
    return Pseudonymizer({"dev1": base64.b64decode(path.read_text().strip())}, "dev1")
