"""The example adapter package (examples/hub-adapter-example) passes the conformance kit against its
reference receiver, imported by path: nothing is installed."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from hub.adapters import Adapter, Message
from hub.adapters.conformance import SCENARIOS, run_conformance
from tests.loopback import serve

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hub-adapter-example"


@pytest.fixture(scope="module")
def example() -> Iterator[tuple[ModuleType, ModuleType]]:
    sys.path.insert(0, str(EXAMPLE / "src"))
    try:
        import hub_nordjournal.adapter as adapter
        import hub_nordjournal.receiver as receiver

        yield adapter, receiver
    finally:
        sys.path.remove(str(EXAMPLE / "src"))


async def test_example_passes_the_kit(example: tuple[ModuleType, ModuleType]) -> None:
    adapter, receiver = example
    journal = receiver.Journal()

    async def cases_for(message: Message) -> int:
        return sum(1 for case in journal.cases.values() if case["externalId"] == message.referral_id)

    with serve(receiver.create_app(api_key="test-key", journal=journal)) as url:
        report = await run_conformance(
            adapter.NordjournalAdapter,
            {"base_url": url + "/api/v2", "api_key_ref": "nordjournal"},
            secrets={"nordjournal": "test-key"},
            timeout_seconds=1.0,
            count_effects=cases_for,
        )
    assert [(r.name, r.outcome) for r in report.results] == [(n, "PASS") for n in SCENARIOS], report.render()
    # The round trip saw the journal confirm the kit's cancellation.
    assert "cancelled" in next(r.detail for r in report.results if r.name == "status-round-trip")


def test_example_declares_its_entry_point(example: tuple[ModuleType, ModuleType]) -> None:
    adapter, _ = example
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    target = project["project"]["entry-points"]["hub.adapters"]["nordjournal"]
    module, _, name = target.partition(":")
    assert (module, name) == ("hub_nordjournal.adapter", "NordjournalAdapter")
    cls = getattr(adapter, name)
    assert issubclass(cls, Adapter) and cls.name == "nordjournal"
