"""Run the hub's conformance kit against the adapter and the reference receiver, on loopback.

This is the test an integrator keeps in their own package: swap in your adapter, your receiver (or a
test instance of your system) and your config.
"""

from __future__ import annotations

from hub_nordjournal.adapter import NordjournalAdapter
from hub_nordjournal.receiver import Journal, create_app

from hub.adapters import Message
from hub.adapters.conformance import SCENARIOS, run_conformance, serve_asgi


async def test_the_adapter_passes_the_conformance_kit() -> None:
    journal = Journal()

    async def cases_for(message: Message) -> int:
        return sum(1 for case in journal.cases.values() if case["externalId"] == message.referral_id)

    with serve_asgi(create_app(api_key="test-key", journal=journal)) as url:
        report = await run_conformance(
            NordjournalAdapter,
            {"base_url": url + "/api/v2", "api_key_ref": "nordjournal"},
            secrets={"nordjournal": "test-key"},
            count_effects=cases_for,
        )
    print(report.render())
    assert [r.outcome for r in report.results] == ["PASS"] * len(SCENARIOS), report.render()
