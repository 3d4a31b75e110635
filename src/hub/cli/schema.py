"""The commands that write or print what the hub publishes or needs: ``hub db upgrade`` (the database
schema), ``hub vocab export`` (the shared vocabulary's files) and ``hub openapi`` (the API document)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hub.cli.common import load_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
vocab_app = typer.Typer(help="The shared vocabulary.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations as the tables' owner (HUB_MIGRATIONS_DATABASE_URL), write the lifecycle's
    status classes the flows read, and grant the runtime role (HUB_DATABASE_URL's) what it needs."""
    from hub.db import migrate
    from hub.db.engine import database_url, migrations_database_url
    from hub.domain.referrals import Lifecycle
    from hub.vocabulary import load_vocabulary

    settings = load_settings()
    migrate.upgrade(
        migrations_database_url(settings),
        settings.migrations_dir,
        runtime_url=database_url(settings),
        status_classes=Lifecycle.of(load_vocabulary(settings.vocabulary_dirs)).classes(),
    )
    typer.echo(f"database at revision {migrate.head_revision(settings.migrations_dir)}")


@vocab_app.command("export")
def vocab_export(directory: Annotated[Path, typer.Argument(help="Where to write the files.")]) -> None:
    """Write the whole vocabulary as JSON, JSON Schema and FHIR R4 resources."""
    from hub.services.vocabulary_export import export_vocabulary
    from hub.vocabulary import load_vocabulary

    settings = load_settings()
    written = export_vocabulary(load_vocabulary(settings.vocabulary_dirs), directory, base_url=settings.public_url)
    typer.echo(json.dumps({"directory": str(directory), "files": written}))


def openapi() -> None:
    """Print the OpenAPI document the app generates (committed as openapi/openapi.json)."""
    from hub.main import create_app

    # The document is the same in every mode; dev mode builds the app without the production keys.
    app = create_app(load_settings().model_copy(update={"dev_mode": True}))
    typer.echo(json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True))
