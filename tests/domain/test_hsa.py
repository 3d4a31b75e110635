"""HSA-ids and organisation numbers: Inera's format, with an error that says which part is wrong."""

from __future__ import annotations

import pytest

from hub.domain.errors import InvalidInput
from hub.domain.hsa import (
    HsaId,
    InvalidHsaId,
    InvalidOrganisationNumber,
    hsa_id_of_subject,
    parse_hsa_id,
    parse_organisation_number,
    professional_reference_problem,
    require_hsa_id,
)


@pytest.mark.parametrize(
    ("text", "organisation_number", "suffix"),
    [
        ("SE2321000131-P000000123457", "2321000131", "P000000123457"),  # HL7 Sweden's example
        ("SE2321000016-ABCD", "2321000016", "ABCD"),
        ("SE2321000016-E1", "2321000016", "E1"),
        ("SE5565594230-x", "5565594230", "x"),
    ],
)
def test_valid_hsa_ids_parse_into_their_parts(text: str, organisation_number: str, suffix: str) -> None:
    assert parse_hsa_id(text) == HsaId(value=text, organisation_number=organisation_number, suffix=suffix)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "type"),
        (2321000016, "type"),
        ("", "length"),
        ("SE2321000016-" + "A" * 19, "length"),  # 32 characters
        ("se2321000016-ABCD", "country"),
        ("NO2321000016-ABCD", "country"),
        ("SE232100-0016-ABCD", "organisation-number"),  # hyphen inside the number
        ("SE23210000-ABCD", "organisation-number"),
        ("SE2301000016-ABCD", "organisation-number"),  # third digit below 2: a personnummer's shape
        ("SE2321000017-ABCD", "check-digit"),
        ("SE2321000016", "suffix"),
        ("SE2321000016-", "suffix"),
        ("SE2321000016ABCD", "suffix"),
        ("SE2321000016-Åsa", "suffix"),
        ("SE2321000016-a@b", "suffix"),
        ("SE2321000016-A B", "suffix"),
    ],
)
def test_invalid_hsa_ids_name_the_part_that_is_wrong(text: object, reason: str) -> None:
    with pytest.raises(InvalidHsaId) as caught:
        parse_hsa_id(text)
    assert caught.value.reason == reason
    assert caught.value.message
    if isinstance(text, str) and text:
        assert text not in caught.value.message  # the message describes, never echoes


def test_require_hsa_id_raises_invalid_input_at_the_field() -> None:
    assert require_hsa_id("SE2321000016-ABCD", field="/hsa_id").suffix == "ABCD"
    with pytest.raises(InvalidInput) as caught:
        require_hsa_id("SE2321000017-ABCD", field="/hsa_id")
    [error] = caught.value.errors
    assert (error.pointer, error.code) == ("/hsa_id", "hsa-id-check-digit")
    assert "check digit" in error.message


@pytest.mark.parametrize("text", ["2321000016", "232100-0016", " 556559-4230 "])
def test_organisation_numbers_normalise_to_ten_digits(text: str) -> None:
    assert parse_organisation_number(text) == text.strip().replace("-", "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("232100001", "format"),
        ("23210000166", "format"),
        ("2321-000016", "format"),
        (None, "format"),
        ("1901010000", "group"),
        ("2321000017", "check-digit"),
    ],
)
def test_invalid_organisation_numbers_say_why(text: object, reason: str) -> None:
    with pytest.raises(InvalidOrganisationNumber) as caught:
        parse_organisation_number(text)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("SE2321000016-ABCD", None),
        ("hsa:SE2321000016-rektor1", None),
        ("local-42", None),  # not an HSA-id: the source system's own id
        ("Sara", None),
        ("SE2321000017-ABCD", "check-digit"),  # starts like an HSA-id, so it must be one
        ("hsa:2321000016-ABCD", "country"),
        ("hsa:SE2321000016", "suffix"),
    ],
)
def test_professional_references_are_checked_where_they_are_hsa_ids(reference: str, reason: str | None) -> None:
    problem = professional_reference_problem(reference)
    assert (problem.reason if problem else None) == reason


def test_a_subject_names_an_hsa_id_when_it_is_one() -> None:
    assert hsa_id_of_subject("hsa:SE2321000016-1234") == "SE2321000016-1234"
    assert hsa_id_of_subject("SE2321000016-1234") == "SE2321000016-1234"
    assert hsa_id_of_subject("system-nora") is None
    assert hsa_id_of_subject("hsa:SE2321000017-1234") is None
    assert hsa_id_of_subject(None) is None
