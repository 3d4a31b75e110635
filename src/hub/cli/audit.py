"""``hub audit``: the audit trail's commands. Each is a command of ``audit_app``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from hub.cli.common import load_settings

audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint file kept outside the database (from `hub audit checkpoint`)."),
    ] = None,
    key_id: Annotated[
        str | None, typer.Option(help="Accept only checkpoints signed by this key id (GET /v1/audit/checkpoints).")
    ] = None,
) -> None:
    """Recompute the audit log's Merkle tree from the entries; compare it with the checkpoint file and the
    newest stored checkpoint. Exit 1 naming every problem found (docs/audit.md)."""
    from hub.db.engine import database_url, make_engine
    from hub.domain.checkpoint import Checkpoint, CheckpointFormatError
    from hub.services.audit_verify import LogReport, verify_log

    settings = load_settings()
    external = None
    if checkpoint is not None:
        try:
            external = Checkpoint.from_json(json.loads(checkpoint.read_text()))
        except (OSError, ValueError, CheckpointFormatError) as exc:
            typer.echo(f"cannot read the checkpoint {checkpoint}: {exc}", err=True)
            raise typer.Exit(2) from None
        if key_id is not None and external.key_id != key_id:
            typer.echo(f"the checkpoint is signed by key {external.key_id}, not {key_id}", err=True)
            raise typer.Exit(1)

    async def run() -> LogReport:
        # Only the database: a verification must never migrate, nor need the keys or the policy.
        engine = make_engine(database_url(settings), settings)
        try:
            return await verify_log(engine, external=external)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    for checked in report.checked:
        typer.echo(f"compared with the {checked}")
    if report.intact:
        typer.echo(
            f"audit trail intact: {report.sealed + report.unsealed} entries ({report.sealed} sealed, "
            f"{report.unsealed} awaiting the sealer; {report.chain_entries} also in pre-0016 chains)"
        )
        return
    for problem in report.problems:
        typer.echo(f"audit trail BROKEN: {problem}", err=True)
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    output: Annotated[Path | None, typer.Option(help="Write the checkpoint file here (default: stdout).")] = None,
) -> None:
    """Seal every queued audit entry and sign a checkpoint of the log now; print or write it (JSON). Keep
    it outside the database: `hub audit verify --checkpoint FILE` checks the log against it."""
    from hub.db.engine import database_url, make_engine
    from hub.keys import KeyConfigurationError, audit_signer
    from hub.services.audit_sealer import SealRound, seal_all

    settings = load_settings()
    try:  # before touching the database: a missing key is a line to the operator, not a traceback
        audit_signer(settings)
    except KeyConfigurationError as exc:
        typer.echo(f"cannot sign a checkpoint: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> SealRound:
        engine = make_engine(database_url(settings), settings)
        try:
            return await seal_all(engine, settings, checkpoint=True)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    assert result.checkpoint is not None
    text = json.dumps(result.checkpoint.to_json(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"checkpoint of {result.checkpoint.head.size} entries written to {output}", err=True)
