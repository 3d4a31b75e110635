"""The conformance kit passes a good adapter and receiver, and fails the ones that break the contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.adapters import DeliveryError, Message, PermanentDeliveryError, Receipt
from hub.adapters.conformance import SCENARIOS, Report, env_secrets, run_conformance, secret_env_var
from hub.adapters.webhook import WebhookAdapter
from hub.cli import app
from tests.adapters.receivers import Inbox, webhook_receiver
from tests.loopback import serve

SECRET = "whsec-kit-test"


def config(url: str) -> dict[str, str]:
    return {"url": url + "/hooks/hub", "secret_ref": "nora-bup"}


async def kit(adapter: type[WebhookAdapter], url: str, inbox: Inbox | None = None) -> Report:
    async def effects(message: Message) -> int | None:
        return inbox.effects(message.idempotency_key) if inbox else None

    return await run_conformance(
        adapter, config(url), secrets={"nora-bup": SECRET}, timeout_seconds=1.0, count_effects=effects
    )


def outcomes(report: Report) -> dict[str, str]:
    return {r.name: r.outcome for r in report.results}


async def test_webhook_passes_against_a_good_receiver() -> None:
    inbox = Inbox()
    with serve(webhook_receiver(SECRET, inbox)) as url:
        report = await kit(WebhookAdapter, url, inbox)
    assert outcomes(report) == dict.fromkeys(SCENARIOS, "PASS"), report.render()
    assert report.ok
    assert inbox.rejected == []  # every request the kit let through was signed right
    duplicate = next(r for r in report.results if r.name == "duplicate")
    assert "target counts 1 effect" in duplicate.detail


async def test_kit_fails_a_receiver_that_ignores_idempotency_keys() -> None:
    inbox = Inbox()
    with serve(webhook_receiver(SECRET, inbox, honour_idempotency=False)) as url:
        report = await kit(WebhookAdapter, url, inbox)
    assert not report.ok
    assert outcomes(report)["duplicate"] == "FAIL"
    assert "two effects" in next(r.detail for r in report.results if r.name == "duplicate")
    assert [n for n, o in outcomes(report).items() if o != "PASS"] == ["duplicate"]


class RetriesEverything(WebhookAdapter):
    """Broken on purpose: calls every refusal retryable, and puts the message into the error."""

    async def deliver(self, message: Message) -> Receipt:
        try:
            return await super().deliver(message)
        except PermanentDeliveryError:
            raise DeliveryError(f"refused: {message.body}") from None


class SwallowsErrors(WebhookAdapter):
    """Broken on purpose: reports success whatever happened."""

    async def deliver(self, message: Message) -> Receipt:
        try:
            return await super().deliver(message)
        except DeliveryError:
            return Receipt()


class NoTarget(WebhookAdapter):
    target_url_field = None


async def test_kit_fails_adapters_that_map_errors_wrongly() -> None:
    with serve(webhook_receiver(SECRET, Inbox())) as url:
        retries = await kit(RetriesEverything, url)
        swallows = await kit(SwallowsErrors, url)
    assert outcomes(retries)["4xx"] == "FAIL"
    detail = next(r.detail for r in retries.results if r.name == "4xx")
    assert "expected PermanentDeliveryError" in detail
    assert {n for n, o in outcomes(swallows).items() if o == "FAIL"} == {"timeout", "4xx", "5xx", "refused"}


async def test_kit_skips_the_fault_scenarios_without_a_target_url_field() -> None:
    with serve(webhook_receiver(SECRET, Inbox())) as url:
        report = await kit(NoTarget, url)
    assert report.ok
    result = outcomes(report)
    assert {n for n, o in result.items() if o == "SKIP"} == {"timeout", "4xx", "5xx", "refused"}
    assert result["deliver"] == result["duplicate"] == "PASS"


async def test_kit_reports_an_invalid_config() -> None:
    report = await run_conformance(WebhookAdapter, {"url": "http://receiver.example/", "secret_ref": "x"})
    assert [(r.name, r.outcome) for r in report.results] == [("config", "FAIL")]
    assert "https" in report.results[0].detail


def test_secrets_come_from_the_environment_like_in_the_hub() -> None:
    resolve = env_secrets({"HUB_SECRET_NORA_BUP": "a", "HUB_ADAPTER_SECRETS": "other:b,nora-bup:c"})
    assert secret_env_var("nora-bup") == "HUB_SECRET_NORA_BUP"
    assert (resolve("nora-bup"), resolve("other")) == ("a", "b")
    with pytest.raises(KeyError):
        resolve("missing")


def test_cli_lists_the_installed_adapters() -> None:
    result = CliRunner().invoke(app, ["adapters", "list"])
    assert result.exit_code == 0, result.output
    assert any(line.split()[:3] == ["webhook", "hub.adapters.webhook:WebhookAdapter", "target_url_field=url"]
               for line in result.output.splitlines())  # fmt: skip


def test_cli_checks_an_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SECRET_NORA_BUP", SECRET)
    file = tmp_path / "webhook.yaml"
    runner = CliRunner()
    with serve(webhook_receiver(SECRET, Inbox())) as url:
        file.write_text(f"url: {url}/hooks/hub\nsecret_ref: nora-bup\n")
        good = runner.invoke(app, ["adapters", "check", "webhook", "--config", str(file), "--timeout", "1"])
    with serve(webhook_receiver(SECRET, Inbox(), honour_idempotency=False)) as url:
        file.write_text(f'{{"url": "{url}/hooks/hub", "secret_ref": "nora-bup"}}')
        bad = runner.invoke(app, ["adapters", "check", "webhook", "--config", str(file), "--timeout", "1"])
    assert good.exit_code == 0, good.output
    assert "8 passed, 0 failed, 0 skipped" in good.output
    assert bad.exit_code == 1, bad.output
    assert any(line.split()[:2] == ["duplicate", "FAIL"] for line in bad.output.splitlines())


def test_cli_check_names_what_it_cannot_run(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("url: https://receiver.example/\nsecret_ref: x\n")
    result = CliRunner().invoke(app, ["adapters", "check", "no-such-adapter", "--config", str(file)])
    assert result.exit_code == 2
    assert "UnknownAdapter" in result.output


async def test_kit_names_a_missing_secret_up_front() -> None:
    report = await run_conformance(WebhookAdapter, {"url": "https://receiver.example/", "secret_ref": "kit-nowhere"})
    assert [(r.name, r.outcome) for r in report.results] == [("secrets", "FAIL")]
    assert "HUB_SECRET_KIT_NOWHERE" in report.results[0].detail
