"""What the ``hub`` commands share: reading the settings, and dev mode for the commands that exist for
trying the hub."""

from __future__ import annotations

import typer

from hub.config import Settings


def load_settings() -> Settings:
    return Settings()


def dev_settings(command: str) -> Settings:
    """The settings with dev mode on, for the commands that exist for trying the hub (``serve --demo``,
    ``demo``, ``token``, ``demo-receiver``): they turn it on for themselves, as the README's tour expects.
    An environment that says ``HUB_DEV_MODE=false`` is refused, not overridden."""
    settings = Settings()
    if "dev_mode" in settings.model_fields_set and not settings.dev_mode:
        typer.echo(f"hub {command} is for trying the hub in dev mode, and HUB_DEV_MODE=false is set.", err=True)
        raise typer.Exit(2)
    return settings.model_copy(update={"dev_mode": True})
