"""A checkpoint: the audit log's signed tree head (format in docs/audit.md).

The signed text (``body``) follows the C2SP ``tlog-checkpoint`` note layout, one field a line, each line
ending in a newline::

    <origin>
    <tree size, decimal>
    <root hash, base64>
    <signed at, ISO 8601 UTC>

and is signed with Ed25519 by the hub's audit key. The file an operator ships elsewhere is JSON
(:meth:`Checkpoint.to_json`): the body, the signature, the public key and its id, plus the body's fields
spelled out for people (a verifier reads the body, which is what is signed).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FORMAT = "hub-audit-checkpoint/1"


class CheckpointFormatError(ValueError):
    """A checkpoint file or body that is not one the hub writes."""


def key_id(public_key: bytes) -> str:
    """A public key's id: the first 8 bytes of ``SHA-256(raw 32-byte Ed25519 public key)``, hex."""
    return hashlib.sha256(public_key).digest()[:8].hex()


@dataclass(frozen=True)
class TreeHead:
    """The log's state: its first ``size`` entries hash to ``root``."""

    origin: str
    size: int
    root: bytes
    signed_at: datetime

    def body(self) -> str:
        """The text the signature covers."""
        stamp = self.signed_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n{stamp}\n"

    @classmethod
    def parse(cls, body: str) -> TreeHead:
        lines = body.split("\n")
        if len(lines) != 5 or lines[-1] != "" or not lines[1].isdigit():
            raise CheckpointFormatError("the checkpoint body is not origin, size, root hash and time, a line each")
        try:
            root = base64.b64decode(lines[2], validate=True)
            signed_at = datetime.fromisoformat(lines[3])
        except ValueError:
            raise CheckpointFormatError("the checkpoint's root hash or time is malformed") from None
        if len(root) != 32:
            raise CheckpointFormatError("the checkpoint's root hash is not 32 bytes")
        return cls(origin=lines[0], size=int(lines[1]), root=root, signed_at=signed_at)


@dataclass(frozen=True)
class Checkpoint:
    """A tree head with the hub's Ed25519 signature over its body."""

    head: TreeHead
    public_key: bytes
    signature: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "origin": self.head.origin,
            "size": self.head.size,
            "root_hash": self.head.root.hex(),
            "signed_at": self.head.signed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "body": self.head.body(),
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key).decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise CheckpointFormatError(f"not a checkpoint file (format {FORMAT!r} expected)")
        try:
            head = TreeHead.parse(str(value["body"]))
            public_key = base64.b64decode(str(value["public_key"]), validate=True)
            signature = base64.b64decode(str(value["signature"]), validate=True)
        except (KeyError, ValueError) as exc:
            if isinstance(exc, CheckpointFormatError):
                raise
            raise CheckpointFormatError("the checkpoint lacks its body, public key or signature") from None
        if head.body() != value["body"]:
            raise CheckpointFormatError("the checkpoint body is not in the hub's layout")
        return cls(head=head, public_key=public_key, signature=signature)
