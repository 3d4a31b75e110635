"""Dev mode is off unless asked for: a hub started without configuration must not make its own keys and
accept tokens anyone with its data directory can mint. The tour's commands ask for it themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.config import Settings


def test_the_default_is_not_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_DEV_MODE", raising=False)
    assert Settings().dev_mode is False


def test_hub_serve_without_production_keys_stops_and_names_them(tmp_path: Path) -> None:
    env = {"HUB_DEV_MODE": None, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "postgresql://nowhere.invalid/x"}
    result = CliRunner().invoke(app, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 2, result.output
    for setting in (
        "HUB_JWKS_URL",
        "HUB_JWT_PUBLIC_KEY_FILE",
        "HUB_PSEUDONYM_KEYS",
        "HUB_PAYLOAD_KEYS",
        "HUB_AUDIT_SIGNING_KEY",
    ):
        assert setting in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == [], "no dev key made, no database started"


def test_the_tours_dev_commands_turn_dev_mode_on_for_themselves(tmp_path: Path) -> None:
    env = {"HUB_DEV_MODE": None, "HUB_DATA_DIR": str(tmp_path)}
    minted = CliRunner().invoke(app, ["token", "--org", "nora-elevhalsa", "--role", "system"], env=env)
    assert minted.exit_code == 0 and minted.output.count(".") == 2, minted.output  # a JWT
    assert (tmp_path / "dev-signing-key.pem").exists(), "signed with the key a dev-mode hub there trusts"

    refused = CliRunner().invoke(app, ["token", "--org", "x", "--role", "system"], env={**env, "HUB_DEV_MODE": "false"})
    assert refused.exit_code == 2 and "HUB_DEV_MODE=false" in refused.output
