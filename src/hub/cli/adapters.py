"""``hub adapters``: the installed delivery adapters, and the conformance kit against one of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.cli.common import load_settings

adapters_app = typer.Typer(help="Delivery adapters: list them, check one with the kit.", no_args_is_help=True)


@adapters_app.command("list")
def adapters_list() -> None:
    """The installed adapters (entry points in the hub.adapters group) and whether HUB_ADAPTERS enables
    them; exit 1 if one does not load or a listed one is not installed."""
    from hub.adapters.conformance import installed

    listed = load_settings().adapters
    broken, found = False, set()
    for name, value, cls, note in installed():
        broken |= cls is None
        found.add(name)
        enabled = "enabled" if name in listed else "not enabled (HUB_ADAPTERS)"
        typer.echo(f"{name:<16} {value:<48} {note:<32} {enabled}")
    for name in sorted(set(listed) - found):
        broken = True
        typer.echo(f"{name:<16} {'-':<48} {'not installed':<32} enabled")
    if broken:
        raise typer.Exit(1)


@adapters_app.command("check")
def adapters_check(
    name: Annotated[str, typer.Argument(help="An installed adapter's name (e.g. webhook), or module:Class.")],
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="The adapter's config, YAML or JSON. Secrets it names come from HUB_SECRET_<NAME>.",
        ),
    ],
    scenario: Annotated[list[str], typer.Option(help="Only this scenario; repeat for several.")] = [],  # noqa: B006
    timeout: Annotated[float, typer.Option(help="The adapters' timeout in seconds during the checks.")] = 2.0,
    hub_url: Annotated[str, typer.Option(help="The hub URL the test messages name.")] = "https://hub.example",
) -> None:
    """Run the conformance kit against an adapter and the target its config names; exit 1 on a FAIL.
    The target receives fictional test referrals: point it at a test system, never at production."""
    from hub.adapters.conformance import check, load_adapter, load_config_file

    try:
        adapter = load_adapter(name)
        settings = load_config_file(config)
        report = check(adapter, settings, timeout_seconds=timeout, hub_url=hub_url, scenarios=scenario or None)
    except Exception as exc:  # a missing adapter, an unreadable file, an unknown scenario: say which
        typer.echo(f"cannot run the kit: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)
