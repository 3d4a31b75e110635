"""``hub registry import FILE``: units from an HSA-style export, idempotent, with a report of what changed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from hub.cli import app
from hub.config import Settings
from hub.devtools.demo import load_demo
from hub.runtime import Runtime

Auth = Callable[..., dict[str, str]]
REGION = "region-samordning"
CSV = """hsaIdentity,name,type,municipalityCode,countyCode,orgNo,id,active
SE2321000164-E101,Elevhälsan Hagby,elevhalsa,1884,,232100-0164,,
SE2321000164-E102,BUP Länet,bup,,18,2321000164,region-bup-lanet,true
SE2321000164-E103,Skola utan typ,,1884,,,,
SE2321000165-E104,Fel kontrollsiffra,grundskola,1884,,,,
SE2321000164-E101,Samma igen,elevhalsa,1884,,,,
"""


@pytest.fixture
async def demo(client: httpx.AsyncClient, runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)


async def hub_import(settings: Settings, path: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    env = {
        "HUB_DATABASE_URL": settings.database_url.get_secret_value() if settings.database_url else "",
        "HUB_MIGRATIONS_DATABASE_URL": (
            settings.migrations_database_url.get_secret_value() if settings.migrations_database_url else ""
        ),
        "HUB_DATA_DIR": str(settings.data_dir),
        "HUB_DEV_MODE": "true",
    }
    argv = ["registry", "import", str(path), "--as", REGION, *args]
    # The command runs its own event loop (asyncio.run), so it gets a thread of its own.
    result = await asyncio.to_thread(CliRunner().invoke, app, argv, env=env)
    return result, json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}


async def test_import_creates_then_changes_nothing_then_updates(
    tmp_path: Path, settings: Settings, runtime: Runtime, demo: None, client: httpx.AsyncClient, auth: Auth
) -> None:
    export = tmp_path / "hsa.csv"
    export.write_text(CSV, encoding="utf-8")
    first, report = await hub_import(settings, export)
    assert first.exit_code == 1, first.output  # a unit was refused
    assert report["created"] == ["se2321000164-e101", "region-bup-lanet"]
    assert report["updated"] == report["unchanged"] == []
    refused = {r["unit"]: r["reasons"] for r in report["refused"]}
    assert refused[3] == ["type: required"]
    assert refused[4] == ["hsa_id: In the HSA-id: The organisation number's check digit is wrong."]
    assert refused[5] == ["hsaIdentity: repeats an earlier unit of the file"]
    found = await client.get(
        "/v1/registry/organisations", params={"hsa_id": "SE2321000164-E102"}, headers=auth("nora-grundskola")
    )
    [bup] = found.json()["items"]
    assert (bup["id"], bup["municipality_code"], bup["region_code"], bup["organisation_number"]) == (
        "region-bup-lanet",
        None,
        "18",
        "2321000164",
    )

    again, report = await hub_import(settings, export)
    assert again.exit_code == 1  # the same units are refused again; the rest is unchanged
    assert (report["created"], report["updated"]) == ([], [])
    assert report["unchanged"] == ["se2321000164-e101", "region-bup-lanet"]

    renamed = tmp_path / "hsa.json"
    renamed.write_text(
        json.dumps(
            {
                "units": [
                    {
                        "hsaIdentity": "SE2321000164-E101",
                        "name": "Elevhälsan Hagby F-9",
                        "type": "elevhalsa",
                        "municipalityCode": "1884",
                        "orgNo": "2321000164",
                        "id": "ignored-when-known",
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    third, report = await hub_import(settings, renamed)
    assert third.exit_code == 0, third.output
    assert report["updated"] == ["se2321000164-e101"]  # matched by HSA-id; keeps its hub id
    async with runtime.sessions() as session:
        canonical = (
            (
                await session.execute(
                    text("select canonical from audit_event where canonical like '%se2321000164-e101%' order by id")
                )
            )
            .scalars()
            .all()
        )
    changes = [json.loads(c)["details"]["change"] for c in canonical]
    assert changes == ["organisation-created", "organisation-updated"]


async def test_dry_run_stores_nothing_and_a_non_admin_organisation_may_not_import(
    tmp_path: Path, settings: Settings, demo: None, client: httpx.AsyncClient, auth: Auth
) -> None:
    export = tmp_path / "hsa.csv"
    export.write_text(CSV, encoding="utf-8")
    dry, report = await hub_import(settings, export, "--dry-run")
    assert dry.exit_code == 1
    assert report["created"] == ["se2321000164-e101", "region-bup-lanet"]
    found = await client.get(
        "/v1/registry/organisations", params={"hsa_id": "SE2321000164-E101"}, headers=auth("nora-grundskola")
    )
    assert found.json()["items"] == []
    env_result, _ = await hub_import(settings, export, "--as", "nora-grundskola")
    assert env_result.exit_code == 2 and "regional coordination" in env_result.output
