"""The adapters' secrets, resolved by name from settings for delivery (the hub's own keys: ``hub.keys``)."""

from __future__ import annotations

import os
from collections.abc import Callable

from hub.config import Settings


def adapter_secret_resolver(settings: Settings) -> Callable[[str], str]:
    """Adapters name their secrets; values come from HUB_SECRET_<NAME> or HUB_ADAPTER_SECRETS."""
    listed: dict[str, str] = {}
    if settings.adapter_secrets is not None:
        for item in settings.adapter_secrets.get_secret_value().split(","):
            name, sep, value = item.strip().partition(":")
            if sep:
                listed[name] = value

    def resolve(name: str) -> str:
        value = os.environ.get("HUB_SECRET_" + name.upper().replace("-", "_"), listed.get(name))
        if value is None and settings.dev_mode:
            value = f"dev-secret-{name}"  # dev and demo receivers use the same well-known value
        if value is None:
            raise KeyError(name)
        return value

    return resolve
