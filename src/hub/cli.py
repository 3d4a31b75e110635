"""The ``hub`` command."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.config import Settings

app = typer.Typer(
    help="hub: regional interoperability hub for early, coordinated support for children.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
vocab_app = typer.Typer(help="The shared vocabulary.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(vocab_app, name="vocab")

TOUR_ORGS = ["nora-grundskola", "nora-elevhalsa", "region-bup", "nora-socialtjanst-myndighet", "region-samordning"]


def _settings() -> Settings:
    return Settings()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="Load the demo data first.")] = False,
) -> None:
    """Run the API. Migrations are applied on start (HUB_APPLY_MIGRATIONS_ON_START)."""
    import uvicorn

    from hub.logging import configure_logging
    from hub.main import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    if demo:
        _load_demo(settings, all_tokens=False, tokens_for_tour=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, proxy_headers=True)


@app.command()
def demo(
    all_tokens: Annotated[
        bool, typer.Option("--all-tokens", help="Print a token for every organisation and role.")
    ] = False,
) -> None:
    """Load the demo data (Region Örebro län, 12 municipalities) and print dev tokens."""
    _load_demo(_settings(), all_tokens=all_tokens)


def _load_demo(settings: Settings, *, all_tokens: bool, tokens_for_tour: bool = True) -> None:
    from hub.api.auth import mint_dev_token
    from hub.runtime import open_runtime
    from hub.services.demo import load_demo

    async def run() -> list:  # type: ignore[type-arg]
        async with open_runtime(settings) as rt, rt.sessions() as session:
            return await load_demo(session)

    orgs = asyncio.run(run())
    lines = []
    for org in orgs:
        for role in org.roles:
            lines.append((org.id, role, mint_dev_token(settings, organisation_id=org.id, roles=[role])))
    token_file = settings.data_dir / "demo-tokens.tsv"
    token_file.write_text("".join(f"{o}\t{r}\t{t}\n" for o, r, t in lines))
    token_file.chmod(0o600)
    typer.echo(f"Demo data loaded: {len(orgs)} organisations in Region Örebro län and its 12 municipalities.")
    typer.echo(f"A dev token for every organisation and role is in {token_file} (org, role, token).")
    typer.echo("Mint one yourself: hub token --org nora-grundskola --role system")
    shown = lines if all_tokens else [ln for ln in lines if ln[0] in TOUR_ORGS and tokens_for_tour]
    for org_id, role, token in shown:
        typer.echo(f"\n{org_id} ({role}):\n{token}")


@app.command()
def token(
    org: Annotated[str, typer.Option("--org", help="Organisation id (the org_id claim).")],
    role: Annotated[list[str], typer.Option("--role", help="Role; repeat for several.")],
    subject: Annotated[str | None, typer.Option(help="The sub claim.")] = None,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
) -> None:
    """Mint a dev token and print only the token."""
    from hub.api.auth import mint_dev_token
    from hub.domain.errors import HubError

    settings = _settings()
    try:
        typer.echo(mint_dev_token(settings, organisation_id=org, roles=role, subject=subject, ttl_seconds=ttl))
    except HubError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to the configured database."""
    from hub.db import migrate
    from hub.db.engine import database_url

    settings = _settings()
    migrate.upgrade(database_url(settings), settings.migrations_dir)
    typer.echo(f"database at revision {migrate.head_revision(settings.migrations_dir)}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk every audit hash chain; exit 1 and name the first broken link if any."""
    from hub.runtime import open_runtime
    from hub.services.audit_log import verify_audit

    async def run():  # type: ignore[no-untyped-def]
        async with open_runtime(_settings()) as rt:
            return await verify_audit(rt.engine)

    report = asyncio.run(run())
    if report.broken is None:
        typer.echo(f"audit trail intact: {report.entries} entries in {report.partitions} chains")
        return
    b = report.broken
    typer.echo(f"audit trail BROKEN: chain {b.partition!r}, entry {b.seq}: {b.problem}", err=True)
    raise typer.Exit(1)


@vocab_app.command("export")
def vocab_export(directory: Annotated[Path, typer.Argument(help="Where to write the files.")]) -> None:
    """Write the whole vocabulary as JSON, JSON Schema and FHIR R4 resources."""
    from hub.services.vocabulary_export import export_vocabulary
    from hub.vocabulary import load_vocabulary

    settings = _settings()
    written = export_vocabulary(load_vocabulary(settings.vocabulary_dirs), directory, base_url=settings.public_url)
    typer.echo(json.dumps({"directory": str(directory), "files": written}))


@app.command()
def openapi() -> None:
    """Print the OpenAPI document the app generates (committed as openapi/openapi.json)."""
    from hub.main import create_app

    typer.echo(json.dumps(create_app(_settings()).openapi(), indent=2, ensure_ascii=False, sort_keys=True))


def main() -> None:  # pragma: no cover
    sys.exit(app())
