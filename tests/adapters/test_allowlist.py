"""Adapters are enabled by an allowlist (HUB_ADAPTERS): an installed adapter not listed is neither loaded
nor offered to endpoints, and a listed one that does not load stops the hub with the reason. And the
configuration errors an adapter finds at delivery time (``AdapterConfigError``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path
from typing import Any

import httpx
import pytest

import hub.adapters
from hub.adapters import (
    Adapter,
    AdapterConfig,
    AdapterConfigError,
    AdapterContext,
    Message,
    PermanentDeliveryError,
    Receipt,
    RefusedAddress,
    registry,
)
from hub.adapters._kit_samples import make_samples
from hub.adapters.webhook import WebhookAdapter
from hub.devtools.demo import load_demo
from hub.main import create_app
from hub.runtime import Runtime
from tests.api.test_auth_and_problems import assert_problem
from tests.loopback import Recorder, Reply, serve

Auth = Callable[..., dict[str, str]]
HUB = Path(sys.executable).parent / "hub"
ENDPOINT = "/v1/registry/organisations/region-bup/endpoint"
BUILT_IN = ["fhir-r4", "mailbox", "webhook"]


class ExtraConfig(AdapterConfig):
    url: str


class ExtraAdapter(Adapter):
    """An adapter some installed package ships."""

    name = "extra"
    Config = ExtraConfig

    async def deliver(self, message: Message) -> Receipt:
        return Receipt()


class HalfAdapter(Adapter):  # forgot deliver
    name = "half"
    Config = ExtraConfig


PLUGINS = {
    "extra": f"{__name__}:ExtraAdapter",
    "half": f"{__name__}:HalfAdapter",
    "not-an-adapter": "json:JSONDecoder",
    "broken": "hub_no_such_package.adapter:Adapter",
}


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The PLUGINS installed next to the built-ins (their entry points); the built-ins enabled again after."""
    real = registry.entry_points

    def entry_points(**select: Any) -> EntryPoints:
        found: list[EntryPoint] = list(real(**select))
        if select.get("group") == registry.GROUP:
            found += [EntryPoint(name, value, registry.GROUP) for name, value in PLUGINS.items()]
        return EntryPoints(found)

    monkeypatch.setattr(registry, "entry_points", entry_points)
    yield
    registry.enable(registry.BUILT_IN)


async def test_an_installed_adapter_not_listed_is_not_offered(
    installed: None, client: httpx.AsyncClient, runtime: Runtime, auth: Auth
) -> None:
    async with runtime.sessions() as session:
        await load_demo(session)
    body = {"adapter": "extra", "config": {"url": "https://journal.example/hub"}}
    r = await client.put(ENDPOINT, json=body, headers=auth("region-bup", "admin"))
    [error] = assert_problem(r, 422, "invalid-input")["errors"]
    assert error["pointer"] == "/adapter" and error["detail"] == f"unknown adapter; installed: {', '.join(BUILT_IN)}"
    with pytest.raises(registry.UnknownAdapter):
        registry.adapter_class("extra")

    assert registry.enable(["webhook", "extra"]) == ["webhook", "extra"]
    r = await client.put(ENDPOINT, json=body, headers=auth("region-bup", "admin"))
    assert r.status_code == 200, r.text
    r = await client.put(ENDPOINT, json={**body, "adapter": "fhir-r4"}, headers=auth("region-bup", "admin"))
    assert assert_problem(r, 422, "invalid-input")["errors"][0]["detail"].endswith("installed: extra, webhook")


def test_a_listed_adapter_that_does_not_load_is_named_with_the_reason(installed: None) -> None:
    with pytest.raises(registry.AdapterLoadError) as raised:
        registry.enable(["webhook", "extra", "half", "not-an-adapter", "broken", "missing"])
    assert raised.value.problems == [
        "half: TypeError: half does not implement deliver",
        "not-an-adapter: TypeError: not-an-adapter is not a hub.adapters.base.Adapter",
        "broken: ModuleNotFoundError: No module named 'hub_no_such_package'",
        "missing: not installed (no entry point in the hub.adapters group)",
    ]
    assert registry.load_problems() == raised.value.problems


async def test_readyz_says_which_adapter_did_not_load(installed: None, runtime: Runtime) -> None:
    """An app built around a runtime opened elsewhere starts anyway; /readyz tells its orchestrator."""
    app = create_app(runtime=runtime)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client,
    ):
        assert (await client.get("/readyz")).json()["checks"]["adapters"] == "ok"
        with pytest.raises(registry.AdapterLoadError):
            registry.enable(["webhook", "broken"])
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["adapters"] == (
            "not loaded: broken: ModuleNotFoundError: No module named 'hub_no_such_package'"
        )


def _installed_package(directory: Path) -> Path:
    """A package installed on ``directory`` (its dist-info), declaring a broken and a foreign adapter."""
    dist = directory / "hub_plugins_under_test-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hub-plugins-under-test\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in PLUGINS.items() if name in ("broken", "not-an-adapter"))
    (dist / "entry_points.txt").write_text(f"[{registry.GROUP}]\n{lines}")
    return directory


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
def test_the_hub_does_not_start_with_a_listed_adapter_that_does_not_load(tmp_path: Path, command: list[str]) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(_installed_package(tmp_path / "site")),
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "HUB_DEV_MODE": "true",
        "HUB_ADAPTERS": "webhook,broken,not-an-adapter",
    }
    done = subprocess.run([str(HUB), *command], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"hub {command[0]}: adapters listed in HUB_ADAPTERS do not load:",
        "  - broken: ModuleNotFoundError: No module named 'hub_no_such_package'",
        "  - not-an-adapter: TypeError: not-an-adapter is not a hub.adapters.base.Adapter",
    ]
    assert not (tmp_path / "data" / "pg").exists()  # stopped before the database started

    # Installed but not listed: not loaded, and the hub starts as far as its adapters go.
    env["HUB_ADAPTERS"] = "webhook"
    listing = subprocess.run([str(HUB), "adapters", "list"], env=env, capture_output=True, text=True, timeout=120)
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert rows["broken"].endswith(" not enabled (HUB_ADAPTERS)") and rows["webhook"].endswith(" enabled")
    assert rows["fhir-r4"].endswith(" not enabled (HUB_ADAPTERS)")


# --- AdapterConfigError: the endpoint is wrong, found at delivery time ---------------------------------------


def test_config_errors_are_dead_lettered_and_public() -> None:
    assert issubclass(AdapterConfigError, PermanentDeliveryError)  # the worker dead-letters them at once
    assert issubclass(RefusedAddress, AdapterConfigError)
    assert {"AdapterConfigError", "RefusedAddress"} <= set(hub.adapters.__all__)


@pytest.fixture
async def context() -> AsyncIterator[AdapterContext]:
    async with httpx.AsyncClient() as http:
        yield AdapterContext(hub_url="https://hub.example", secret=lambda _: "s3cret", http=http, timeout_seconds=2)


async def test_a_stored_config_the_adapter_no_longer_accepts(context: AdapterContext) -> None:
    fields = r"\(secret_ref, sekret_ref, url\)"  # missing, unknown, plain http to a remote host
    with pytest.raises(AdapterConfigError, match=rf"the endpoint's webhook config is not valid {fields}"):
        WebhookAdapter.configured({"url": "http://journal.example/hub", "sekret_ref": "x"}, context)
    assert isinstance(WebhookAdapter.configured({"url": "https://j.example/", "secret_ref": "x"}, context), Adapter)


async def test_a_redirecting_url_is_a_configuration_error(context: AdapterContext) -> None:
    message = make_samples(hub_url="https://hub.example").referral
    with serve(Recorder(lambda r: Reply(308, None, {"location": "https://elsewhere.example/"}))) as url:
        adapter = WebhookAdapter.configured({"url": url + "/hub", "secret_ref": "x"}, context)
        with pytest.raises(AdapterConfigError, match="redirects are not followed; configure the final URL"):
            await adapter.deliver(message)
