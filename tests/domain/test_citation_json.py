"""A citation as the decision row and the audit entry keep it: the same JSON as ``dataclasses.asdict`` with
ISO dates, which is how every stored citation was written."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import pytest

from hub.domain.sharing.facts import Citation


def _as_before(citation: Citation) -> dict[str, object]:
    data = dataclasses.asdict(citation)
    for key in ("valid_from", "valid_until"):
        data[key] = None if data[key] is None else data[key].isoformat()
    return data


@pytest.mark.parametrize(
    "citation",
    [
        Citation("consent", "legal-bases", "2", "osl-12-2", "Samtycke", "Consent", date(2025, 7, 1), None, True),
        Citation(
            "report-of-concern", "legal-bases", "1", None, "Anmälan", "Report", None, date(2026, 1, 1), False, "x"
        ),
    ],
)
def test_a_citation_is_kept_as_it_always_was(citation: Citation) -> None:
    assert json.dumps(citation.as_json()) == json.dumps(_as_before(citation))
