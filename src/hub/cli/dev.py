"""The commands for trying the hub: ``hub demo``, ``hub synth``, ``hub token``, ``hub demo-receiver``.
Each turns dev mode on for itself (``synth`` requires it); their tools live in ``hub.devtools``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from hub.cli.common import dev_settings, load_settings
from hub.config import Settings

TOUR_ORGS = ["nora-grundskola", "nora-elevhalsa", "region-bup", "nora-socialtjanst-myndighet", "region-samordning"]


def demo(
    all_tokens: Annotated[
        bool, typer.Option("--all-tokens", help="Print a token for every organisation and role.")
    ] = False,
) -> None:
    """Load the demo data (Region Örebro län, 12 municipalities) and print dev tokens."""
    load_demo_and_tokens(dev_settings("demo"), all_tokens=all_tokens)


def load_demo_and_tokens(settings: Settings, *, all_tokens: bool, tokens_for_tour: bool = True) -> None:
    """Load the demo registry, write a dev token for every organisation and role to the data directory
    (owner-readable only), and print the tour's tokens (or all, or none)."""
    from hub.api.auth import mint_dev_token
    from hub.devtools.demo import load_demo
    from hub.runtime import open_runtime

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


def synth(
    referrals: Annotated[int, typer.Option("--referrals", min=1, help="How many referrals to write.")],
    seed: Annotated[int, typer.Option("--seed", help="The same seed writes the same history.")] = 1,
    weeks: Annotated[int, typer.Option("--weeks", min=1, help="Sent over this many weeks up to now.")] = 52,
    through_api: Annotated[
        bool,
        typer.Option("--through-api", help="Through the use cases, as real data (slow; small sizes). Default: bulk."),
    ] = False,
) -> None:
    """Write synthetic referral history (fictional children) for Region Örebro län; loads the demo
    registry if missing. Bulk by default: COPY, then the flow rollups rebuilt set-based."""
    from hub.devtools.synth import SynthResult
    from hub.devtools.synth import synth as write_history
    from hub.runtime import open_runtime

    settings = load_settings()
    if not settings.dev_mode:
        # Fictional referrals in a real county's database would be counted in its coordinators' flows.
        typer.echo("hub synth writes fictional referrals: it runs only in dev mode (HUB_DEV_MODE=true).", err=True)
        raise typer.Exit(2)

    async def run() -> SynthResult:
        # As the tables' owner: the bulk load switches the flow triggers off while it copies.
        async with open_runtime(settings, owner=True) as rt:
            return await write_history(
                rt, referrals=referrals, seed=seed, weeks=weeks, through_api=through_api, progress=_progress
            )

    result = asyncio.run(run())
    typer.echo(
        f"{result.referrals:,} referrals, {result.events:,} events, {result.children:,} children, "
        f"{result.consents:,} consents; loaded in {result.load_seconds:.1f} s, "
        f"rollups rebuilt in {result.rebuild_seconds:.1f} s"
    )


def _progress(done: int) -> None:
    typer.echo(f"  {done:,} referrals written", err=True)


def token(
    org: Annotated[str, typer.Option("--org", help="Organisation id (the org_id claim).")],
    role: Annotated[list[str], typer.Option("--role", help="Role; repeat for several.")],
    subject: Annotated[str | None, typer.Option(help="The sub claim.")] = None,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
) -> None:
    """Mint a dev token for a dev-mode hub using the same data directory, and print only the token."""
    from hub.api.auth import mint_dev_token
    from hub.domain.errors import HubError

    settings = dev_settings("token")
    try:
        typer.echo(mint_dev_token(settings, organisation_id=org, roles=role, subject=subject, ttl_seconds=ttl))
    except HubError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(2) from None


def demo_receiver(
    port: Annotated[int, typer.Option(help="Port to listen on (the demo registry uses 8901).")] = 8901,
    secret_ref: Annotated[str, typer.Option(help="The webhook secret's name.")] = "demo-webhook",
) -> None:
    """A receiving case system for the tour: prints each referral and status event the hub delivers."""
    import uvicorn

    from hub.devtools.demo_receiver import receiver_app
    from hub.services.keys import adapter_secret_resolver

    secret = adapter_secret_resolver(dev_settings("demo-receiver"))(secret_ref)
    typer.echo(f"demo receiver on http://127.0.0.1:{port} (webhook secret {secret_ref!r})")
    uvicorn.run(receiver_app(secret, echo=typer.echo), host="127.0.0.1", port=port, log_level="warning")
