"""Personnummer / samordningsnummer parsing and keyed pseudonyms (hub.domain.identity)."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.identity import (
    InvalidPersonalIdentityNumber,
    PersonalIdentityNumber,
    Pseudonymizer,
    luhn_check_digit,
    parse_personal_identity_number,
)

TODAY = date(2025, 5, 1)


def with_check_digit(nine: str) -> str:
    """YYMMDDNNN + the Luhn digit: the 10-digit form without separator."""
    return nine + str(luhn_check_digit(nine))


def parse(text: str, today: date = TODAY) -> PersonalIdentityNumber:
    return parse_personal_identity_number(text, today=today)


# --------------------------------------------------------------------------------------- the helper


@pytest.mark.parametrize(
    "ten_digits",
    [
        "1212121212",  # Skatteverket's well-known test number 19121212-1212 (Tolvan Tolvansson)
        "8112189876",  # a widely published valid example
        "7010632391",  # Skatteverket's example samordningsnummer 701063-2391
        "6403273813",
    ],
)
def test_luhn_helper_agrees_with_known_valid_numbers(ten_digits: str) -> None:
    assert with_check_digit(ten_digits[:9]) == ten_digits


# ------------------------------------------------------------------------------------- valid forms


@pytest.mark.parametrize(
    ("text", "canonical", "born", "kind"),
    [
        pytest.param("19121212-1212", "191212121212", date(1912, 12, 12), "personnummer", id="12-digits-dash"),
        pytest.param("191212121212", "191212121212", date(1912, 12, 12), "personnummer", id="12-digits-plain"),
        pytest.param("121212+1212", "191212121212", date(1912, 12, 12), "personnummer", id="10-digits-plus-100+"),
        pytest.param("121212-1212", "201212121212", date(2012, 12, 12), "personnummer", id="10-digits-dash"),
        pytest.param("1212121212", "201212121212", date(2012, 12, 12), "personnummer", id="10-digits-plain"),
        pytest.param("811218-9876", "198112189876", date(1981, 12, 18), "personnummer", id="10-digits-1981"),
        pytest.param("701063-2391", "197010632391", date(1970, 10, 3), "samordningsnummer", id="samordningsnummer-10"),
        pytest.param(
            "19701063-2391", "197010632391", date(1970, 10, 3), "samordningsnummer", id="samordningsnummer-12"
        ),
        pytest.param(" 19121212-1212\n", "191212121212", date(1912, 12, 12), "personnummer", id="outer-space"),
    ],
)
def test_valid_numbers_parse(text: str, canonical: str, born: date, kind: str) -> None:
    pin = parse(text)
    assert pin.canonical == canonical
    assert pin.birth_date == born
    assert pin.kind == kind


def test_ten_and_twelve_digit_forms_are_the_same_value() -> None:
    assert parse("121212+1212") == parse("19121212-1212") == parse("191212121212")


# --------------------------------------------------------------------------------------- centuries


def test_ten_digit_dash_means_the_latest_century_not_in_the_future() -> None:
    number = with_check_digit("250601123")  # born 1 June of a year ending in 25
    assert parse(number, today=date(2025, 5, 31)).birth_date == date(1925, 6, 1)  # 2025-06-01 is future
    assert parse(number, today=date(2025, 6, 1)).birth_date == date(2025, 6, 1)  # born today
    assert parse(number, today=date(2025, 6, 1)).age_on(date(2025, 6, 1)) == 0


def test_ten_digit_plus_means_a_century_earlier() -> None:
    number = with_check_digit("250601123")
    plus = number[:6] + "+" + number[6:]
    assert parse(plus, today=date(2025, 6, 1)).birth_date == date(1925, 6, 1)
    assert parse(plus, today=date(2025, 5, 31)).birth_date == date(1825, 6, 1)


def test_plus_for_a_birthday_later_this_year_is_two_centuries_back() -> None:
    number = with_check_digit("250502123")  # 2 May; TODAY is 1 May 2025
    assert parse(number[:6] + "-" + number[6:]).birth_date == date(1925, 5, 2)
    assert parse(number[:6] + "+" + number[6:]).birth_date == date(1825, 5, 2)


def test_born_1925_and_2025_in_the_ten_digit_form() -> None:
    number = with_check_digit("250101123")
    dash = number[:6] + "-" + number[6:]
    plus = number[:6] + "+" + number[6:]
    assert parse(dash).birth_date == date(2025, 1, 1)
    assert parse(plus).birth_date == date(1925, 1, 1)
    assert parse(plus).age_on(TODAY) == 100


def test_age_on_birthday_boundaries() -> None:
    pin = parse("19121212-1212")
    assert pin.age_on(date(2012, 12, 11)) == 99
    assert pin.age_on(date(2012, 12, 12)) == 100
    with pytest.raises(ValueError):
        pin.age_on(date(1900, 1, 1))


# ------------------------------------------------------------------------------------------ Feb 29


def test_feb_29_in_a_leap_year_is_valid() -> None:
    number = with_check_digit("000229123")
    pin = parse("20" + number)
    assert pin.birth_date == date(2000, 2, 29)
    assert parse(number).birth_date == date(2000, 2, 29)
    assert pin.age_on(date(2001, 2, 28)) == 0
    assert pin.age_on(date(2001, 3, 1)) == 1


def test_feb_29_is_invalid_in_a_common_year() -> None:
    number = with_check_digit("010229123")
    with pytest.raises(InvalidPersonalIdentityNumber) as error:
        parse("20" + number)
    assert error.value.reason == "date"


def test_feb_29_plus_resolves_to_1900_which_is_not_a_leap_year() -> None:
    number = with_check_digit("000229123")
    with pytest.raises(InvalidPersonalIdentityNumber) as error:
        parse(number[:6] + "+" + number[6:])
    assert error.value.reason == "date"


# ----------------------------------------------------------------------------------------- invalid


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("19121212-1213", "checksum", id="wrong-check-digit-12"),
        pytest.param("121212-1213", "checksum", id="wrong-check-digit-10"),
        pytest.param("811218-9875", "checksum", id="wrong-check-digit-1981"),
        pytest.param("121212/1212", "format", id="slash-separator"),
        pytest.param("121212 1212", "format", id="space-separator"),
        pytest.param("12121-21212", "format", id="separator-in-wrong-place"),
        pytest.param("19121212+1212", "format", id="plus-in-12-digit-form"),
        pytest.param("121212--1212", "format", id="double-separator"),
        pytest.param("12121A-1212", "format", id="letter"),
        pytest.param("121212-121", "format", id="too-short"),
        pytest.param("1912121212123", "format", id="thirteen-digits"),
        pytest.param("12345678901", "format", id="eleven-digits"),
        pytest.param("", "format", id="empty"),
        pytest.param("١٢١٢١٢-١٢١٢", "format", id="non-ascii-digits"),
        pytest.param(with_check_digit("121312123"), "date", id="month-13"),
        pytest.param(with_check_digit("120000123"), "date", id="month-00"),
        pytest.param(with_check_digit("121200123"), "date", id="day-00"),
        pytest.param(with_check_digit("120431123"), "date", id="april-31"),
        pytest.param(with_check_digit("121293123"), "date", id="samordningsnummer-day-33"),
        pytest.param("20" + with_check_digit("300101123"), "date", id="future-12-digit"),
    ],
)
def test_invalid_numbers_are_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidPersonalIdentityNumber) as error:
        parse(text)
    assert error.value.reason == reason
    assert error.value.message_sv and str(error.value)


def test_tomorrow_in_twelve_digit_form_is_a_future_birth_date() -> None:
    tomorrow = TODAY + timedelta(days=1)
    nine = tomorrow.strftime("%y%m%d") + "123"
    with pytest.raises(InvalidPersonalIdentityNumber) as error:
        parse(tomorrow.strftime("%Y")[:2] + with_check_digit(nine))
    assert error.value.reason == "date"


# --------------------------------------------------------------------------------- never leaks


def _digits_of(text: str) -> str:
    return re.sub(r"\D", "", text)


def test_value_object_is_masked_everywhere() -> None:
    pin = parse("19121212-1212")
    for rendering in (
        str(pin),
        repr(pin),
        f"{pin}",
        f"{pin!r}",
        format(pin),
        "".join([str(pin)]),
        repr([pin]),
        repr({"x": pin}),
    ):
        assert "1212" not in rendering, rendering
        assert "****" in rendering


@pytest.mark.parametrize("text", ["19121212-1213", "121212/1212", "19301312-1212", "191212121213"])
def test_error_messages_never_contain_the_number(text: str) -> None:
    with pytest.raises(InvalidPersonalIdentityNumber) as error:
        parse(text)
    digits = _digits_of(text)
    for rendering in (str(error.value), repr(error.value), error.value.message_sv, str(error.value.args)):
        assert digits[-4:] not in _digits_of(rendering) or not _digits_of(rendering)
        assert text.strip() not in rendering
    assert error.value.__cause__ is None


@given(st.text(alphabet="0123456789-+ ", min_size=10, max_size=14))
def test_any_rejection_message_is_free_of_digits(text: str) -> None:
    try:
        parse(text)
    except InvalidPersonalIdentityNumber as error:
        # The message depends on the reason only, never on the input.
        fresh = InvalidPersonalIdentityNumber(error.reason)
        assert (str(error), error.message_sv) == (str(fresh), fresh.message_sv)
        assert repr(error) == f"InvalidPersonalIdentityNumber(reason={error.reason!r})"


# ------------------------------------------------------------------------------------ properties


@given(
    st.dates(min_value=date(1890, 1, 1), max_value=TODAY),
    st.integers(min_value=0, max_value=999),
    st.booleans(),
)
def test_every_generated_valid_number_parses_in_all_its_forms(born: date, serial: int, coordination: bool) -> None:
    day = born.day + (60 if coordination else 0)
    nine = f"{born:%y%m}{day:02d}{serial:03d}"
    ten = with_check_digit(nine)
    twelve = f"{born.year // 100:02d}{ten}"
    over_100 = (TODAY.year - born.year, TODAY.month, TODAY.day) >= (100, born.month, born.day)
    ten_with_sep = ten[:6] + ("+" if over_100 else "-") + ten[6:]
    forms = [twelve, twelve[:8] + "-" + twelve[8:], ten_with_sep]
    parsed = {parse(form) for form in forms}
    assert len(parsed) == 1
    pin = parsed.pop()
    assert pin.birth_date == born
    assert pin.canonical == twelve
    assert pin.kind == ("samordningsnummer" if coordination else "personnummer")
    assert twelve not in repr(pin) and ten not in str(pin)


# ------------------------------------------------------------------------------------- pseudonyms

KEY_A = b"a" * 32
KEY_B = b"b" * 32


def test_pseudonym_format_and_stability() -> None:
    pin = parse("19121212-1212")
    pseudonymizer = Pseudonymizer({"k1": KEY_A}, "k1")
    pseudonym = pseudonymizer.pseudonym(pin)
    assert re.fullmatch(r"k1:[0-9a-f]{64}", pseudonym)
    assert pseudonym == Pseudonymizer({"k1": KEY_A}, "k1").pseudonym(parse("121212+1212"))
    assert "1212" not in pseudonym.split(":", 1)[0]


def test_pseudonyms_differ_by_key_and_by_person() -> None:
    pin, other = parse("19121212-1212"), parse("811218-9876")
    a = Pseudonymizer({"k1": KEY_A}, "k1")
    b = Pseudonymizer({"k1": KEY_B}, "k1")
    assert a.pseudonym(pin) != b.pseudonym(pin)
    assert a.pseudonym(pin) != a.pseudonym(other)


def test_candidates_match_records_across_key_rotation() -> None:
    pin = parse("19121212-1212")
    before = Pseudonymizer({"k1": KEY_A}, "k1").pseudonym(pin)
    after = Pseudonymizer({"k1": KEY_A, "k2": KEY_B}, "k2")
    candidates = after.candidates(pin)
    assert candidates[0] == after.pseudonym(pin)
    assert candidates[0].startswith("k2:")
    assert before in candidates
    assert len(candidates) == 2


@pytest.mark.parametrize(
    ("keys", "current"),
    [
        ({"k1": KEY_A}, "k2"),
        ({"k1": b"short"}, "k1"),
        ({"k:1": KEY_A}, "k:1"),
        ({"": KEY_A}, ""),
    ],
)
def test_pseudonymizer_rejects_bad_keys(keys: dict[str, bytes], current: str) -> None:
    with pytest.raises(ValueError):
        Pseudonymizer(keys, current)


def test_pseudonymizer_repr_hides_keys() -> None:
    rendering = repr(Pseudonymizer({"k1": KEY_A}, "k1"))
    assert "aaaa" not in rendering and "k1" in rendering


def test_a_childs_age_follows_the_swedish_calendar() -> None:
    """Just after midnight in Stockholm on the 15th birthday it is still the day before in UTC."""
    from datetime import UTC, datetime

    from hub.domain.principal import Principal, Role
    from hub.services.context import Actor

    number = f"20110601-238{luhn_check_digit('110601238')}"
    pin = parse_personal_identity_number(number, today=date(2026, 7, 1))
    actor = Actor(Principal("s", "o", frozenset({Role.SYSTEM})), now=datetime(2026, 5, 31, 22, 30, tzinfo=UTC))
    assert actor.today == date(2026, 6, 1)
    assert pin.age_on(actor.today) == 15
    assert pin.age_on(actor.now.date()) == 14
