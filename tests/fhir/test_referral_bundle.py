"""Reading a referral Bundle (pure): what it asks for, or every offending element as a FHIRPath."""

from __future__ import annotations

import copy

import pytest
from tests.fhir.test_fhir_referrals_in import bundle

from hub.domain.errors import InvalidInput
from hub.fhir.referral_bundle import parse_referral_bundle
from hub.fhir.tasks import task_change


def test_the_adapters_shape_reads_back_into_a_referral() -> None:
    wanted = parse_referral_bundle(bundle())
    assert (wanted.kind, wanted.recipient_hsa_id, wanted.idempotency_key) == (
        "remiss",
        "SE2321000164-BUP1",
        "fhir-bundle:urn:journal:journal-1|remiss-77",
    )
    assert wanted.data_categories == ["concern-text", "identity", "school-situation"]
    assert wanted.information == {"school-situation": {"attendance_percent": 62}}
    assert (wanted.dimensions, wanted.trappan_step) == (["healthy"], 2)


def test_without_a_bundle_identifier_the_tasks_if_none_exist_is_the_key() -> None:
    body = copy.deepcopy(bundle())
    del body["identifier"]
    body["entry"][2]["request"]["ifNoneExist"] = "identifier=urn:journal|77"
    assert parse_referral_bundle(body).idempotency_key == "fhir-if-none-exist:identifier=urn:journal|77"
    del body["entry"][2]["request"]["ifNoneExist"]
    with pytest.raises(InvalidInput) as caught:
        parse_referral_bundle(body)
    assert [e.pointer for e in caught.value.errors] == ["Bundle.identifier"]


def test_every_offending_element_is_named() -> None:
    body = copy.deepcopy(bundle())
    body["entry"][1]["resource"]["code"] = {"text": "remiss"}
    body["entry"][0]["resource"]["identifier"] = [{"system": "urn:local", "value": "x"}]
    body["entry"][2]["resource"]["owner"] = {"identifier": {"system": "urn:local", "value": "bup"}}
    with pytest.raises(InvalidInput) as caught:
        parse_referral_bundle(body)
    assert sorted(e.pointer for e in caught.value.errors) == [
        "Bundle.entry[0].resource.identifier",
        "Bundle.entry[1].resource.code",
        "Bundle.entry[2].resource.owner.identifier.system",
    ]
    assert "191212" not in str([e.message for e in caught.value.errors])


def test_a_task_update_reads_status_reason_and_feedback() -> None:
    reason = {
        "coding": [{"system": "https://vocab.hub.se/fhir/CodeSystem/rejection-reasons", "code": "x"}],
        "text": "t",
    }
    change = task_change({"resourceType": "Task", "status": "rejected", "statusReason": reason}, patch=False)
    assert (change.status, change.reason_code, change.reason_text) == ("rejected", "x", "t")
    ops = [
        {"op": "replace", "path": "/status", "value": "completed"},
        {"op": "add", "path": "/note", "value": [{"text": "Klart."}]},
    ]
    assert task_change(ops, patch=True).feedback == "Klart."
    assert task_change({"status": "ready"}, patch=True).status == "accepted"
    with pytest.raises(InvalidInput):
        task_change([{"op": "remove", "path": "/status"}], patch=True)
