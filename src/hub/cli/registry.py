"""``hub registry``: the registry from the command line; ``hub registry import FILE`` loads units from an
HSA-style export (CSV or JSON, documented in ``hub.services.registry_import`` and docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hub.cli.common import load_settings

if TYPE_CHECKING:
    from hub.services.registry_import import ImportReport

registry_app = typer.Typer(help="The registry of organisations.", no_args_is_help=True)


@registry_app.command("import")
def registry_import(
    file: Annotated[Path, typer.Argument(help="The export: .csv (header line) or .json", exists=True, dir_okay=False)],
    organisation: Annotated[
        str, typer.Option("--as", help="The regional coordination organisation the import is audited as")
    ],
    fmt: Annotated[str | None, typer.Option("--format", help="csv or json; default: the file's suffix")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; store nothing")] = False,
) -> None:
    """Create or update organisations from the export's units, matched by HSA-id; print the report as
    JSON (created, updated, unchanged, refused with reasons). Exit status 1 when a unit was refused."""
    from hub.domain.errors import HubError
    from hub.domain.principal import Principal, Role
    from hub.runtime import open_runtime
    from hub.services.context import Actor
    from hub.services.registry_import import import_units, read_units

    kind = (fmt or file.suffix.lstrip(".")).lower()
    if kind not in ("csv", "json"):
        typer.echo("name the format: --format csv or --format json", err=True)
        raise typer.Exit(2)
    actor = Actor(Principal(subject="cli:registry-import", organisation_id=organisation, roles=frozenset({Role.ADMIN})))

    async def run() -> ImportReport:
        async with open_runtime(load_settings()) as rt:
            units = read_units(file.read_text(encoding="utf-8-sig"), fmt=kind)
            return await import_units(actor=actor, runtime=rt, units=units, dry_run=dry_run)

    try:
        report = asyncio.run(run())
    except HubError as exc:
        typer.echo(
            json.dumps({"error": exc.detail, "fields": [f"{e.pointer}: {e.message}" for e in exc.errors]}), err=True
        )
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    if report.refused:
        raise typer.Exit(1)
