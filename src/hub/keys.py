"""The hub's own keys, read from settings (or made and kept in the data directory in dev mode): the
pseudonymizer's and the payload cipher's for personal data at rest, and the audit log's signing key.

The runtime builds both at start, so this module sits beside ``hub.config``, below the services that use
them (``hub.services.keys`` keeps the adapters' secrets).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr

from hub.config import Settings
from hub.domain.checkpoint import Checkpoint, TreeHead
from hub.domain.identity import Pseudonymizer


class KeyConfigurationError(ValueError):
    """The configured keys are missing or malformed; the hub refuses to start."""


def _keyring(
    setting: SecretStr | None, current: str | None, variable: str, dev_file: Path, settings: Settings
) -> tuple[dict[str, bytes], str]:
    """Keys from a "keyid:base64key,…" setting, or in dev mode one made and kept in the data directory."""
    if setting is not None:
        keys: dict[str, bytes] = {}
        for item in setting.get_secret_value().split(","):
            key_id, sep, encoded = item.strip().partition(":")
            if not sep or not key_id:
                raise KeyConfigurationError(f"{variable} entries look like keyid:base64key")
            if key_id in keys:
                raise KeyConfigurationError(f"{variable}: key id {key_id!r} is listed twice")
            try:
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise KeyConfigurationError(f"{variable}: key {key_id!r} is not base64") from None
        chosen = current or next(iter(keys))
        if chosen not in keys:
            raise KeyConfigurationError(f"{variable}: the current key id {chosen!r} is not listed")
        return keys, chosen
    if not settings.dev_mode:
        raise KeyConfigurationError(f"Set {variable} (dev mode makes a key; production must not).")
    if not dev_file.exists():
        dev_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dev_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
    return {"dev1": base64.b64decode(dev_file.read_text().strip())}, "dev1"


def pseudonymizer(settings: Settings) -> Pseudonymizer:
    keys, current = _keyring(
        settings.pseudonym_keys,
        settings.pseudonym_key_id,
        "HUB_PSEUDONYM_KEYS",
        settings.dev_pseudonym_key_file,
        settings,
    )
    try:
        return Pseudonymizer(keys, current)
    except ValueError as exc:
        raise KeyConfigurationError(f"HUB_PSEUDONYM_KEYS: {exc}") from None


class PayloadCipher:
    """AES-256-GCM for personal data at rest. The key id travels with each ciphertext so keys rotate;
    the associated data binds a ciphertext to its row, so one row's payload cannot be pasted into another."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if any(len(k) != 32 for k in keys.values()):
            raise KeyConfigurationError("HUB_PAYLOAD_KEYS: every key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current = current

    def encrypt(self, document: Any, *, bound_to: str) -> tuple[bytes, str]:
        nonce = secrets.token_bytes(12)
        plain = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return nonce + self._aead[self.current].encrypt(nonce, plain, bound_to.encode()), self.current

    def decrypt(self, blob: bytes, key_id: str, *, bound_to: str) -> Any:
        aead = self._aead.get(key_id)
        if aead is None:
            raise KeyConfigurationError(f"payload key {key_id!r} is no longer configured")
        return json.loads(aead.decrypt(blob[:12], blob[12:], bound_to.encode()))


def payload_cipher(settings: Settings) -> PayloadCipher:
    keys, current = _keyring(
        settings.payload_keys, settings.payload_key_id, "HUB_PAYLOAD_KEYS", settings.dev_payload_key_file, settings
    )
    return PayloadCipher(keys, current)


class AuditSigner:
    """Signs the audit log's tree heads with the hub's Ed25519 key (HUB_AUDIT_SIGNING_KEY)."""

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise KeyConfigurationError("HUB_AUDIT_SIGNING_KEY: base64 of a 32-byte Ed25519 private key")
        self._key = Ed25519PrivateKey.from_private_bytes(private_key)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, head: TreeHead) -> Checkpoint:
        return Checkpoint(head=head, public_key=self.public_key, signature=self._key.sign(head.body().encode()))


def audit_signer(settings: Settings) -> AuditSigner:
    setting = settings.audit_signing_key
    keys, current = _keyring(
        None if setting is None else SecretStr("audit:" + setting.get_secret_value().strip()),
        None,
        "HUB_AUDIT_SIGNING_KEY",
        settings.dev_audit_signing_key_file,
        settings,
    )
    return AuditSigner(keys[current])


def signature_valid(checkpoint: Checkpoint) -> bool:
    """Whether the checkpoint's signature is its public key's over its body (which key to trust is the
    verifier's to decide: compare ``checkpoint.key_id`` with the one the hub publishes)."""
    try:
        Ed25519PublicKey.from_public_bytes(checkpoint.public_key).verify(
            checkpoint.signature, checkpoint.head.body().encode()
        )
    except (InvalidSignature, ValueError):
        return False
    return True
