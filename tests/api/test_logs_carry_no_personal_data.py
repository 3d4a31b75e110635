"""Logs carry no personal identity numbers, whatever a request does with one."""

from __future__ import annotations

import json
import logging

import pytest

from hub.logging import JsonFormatter, quiet_libraries
from tests.api.test_lawful_sharing_http import CHILD, ask, consent_body, demo, record_consent  # noqa: F401
from tests.logscan import CapturingHandler, personal_identity_numbers_in


def test_the_scanner_finds_what_it_looks_for() -> None:
    """Without this the scan below could pass by finding nothing at all."""
    leaked = ['{"msg": "child 20150311-2383"}', "pin=201503112383", "1503112383 ok"]
    assert personal_identity_numbers_in(leaked) == leaked
    harmless = ['{"request_id": "a20150311238300b"}', "id 20150311-2385", "sha 9f201503112383"]
    assert personal_identity_numbers_in(harmless) == []


async def test_requests_with_numbers_leave_none_in_the_log(client, auth, demo) -> None:  # noqa: F811
    handler = CapturingHandler()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    quiet_libraries()
    try:
        await record_consent(client, auth)
        await ask(client, auth)
        await client.post("/v1/consents", json=consent_body(), headers=auth("orebro-grundskola", "coordinator"))
        await client.post("/v1/consents/search", json={"child": {"personal_identity_number": CHILD}})
        bad = consent_body(child={"personal_identity_number": "20150311-2384"}, purposes=["nope"])
        await client.post("/v1/consents", json=bad, headers=auth("nora-elevhalsa", "system"))
        await client.get(f"/v1/consents/{CHILD}", headers=auth("nora-elevhalsa", "system"))
        await client.post(
            "/v1/audit/search",
            json={"child": {"personal_identity_number": CHILD}},
            headers=auth("region-samordning", "auditor"),
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert any('"route"' in line for line in handler.lines), "the access log was captured"
    assert personal_identity_numbers_in(handler.lines) == []


@pytest.mark.parametrize("number", ["20150311-2383", "201503112383", "150311-2383", "1503112383"])
def test_every_form_of_a_number_is_recognised(number: str) -> None:
    assert personal_identity_numbers_in([f"x {number} y"])


def test_only_the_servers_own_messages_are_formatted() -> None:
    """The server's start-up line says where it listens; any other logger's arguments never reach the log."""
    formatter = JsonFormatter()

    def line(name: str, msg: str, *args: object) -> str:
        record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
        return str(json.loads(formatter.format(record))["msg"])

    assert line("uvicorn.error", "Uvicorn running on %s://%s:%d", "http", "127.0.0.1", 8000) == (
        "Uvicorn running on http://127.0.0.1:8000"
    )
    assert line("hub.services", "sent about %s", "20150311-2383") == "sent about %s"
