"""Crosswalk translation: all matches both ways, inverted equivalences, explicit unmatched."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.domain.vocabulary import CANONICAL_BASE, Equivalence, InvalidRequest, UnknownCode, Vocabulary
from hub.vocabulary import load_vocabulary

FIXTURES = Path(__file__).parent / "fixtures" / "variants"
TEST_VARIANT = "variant-test-livsblomma"


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary([FIXTURES])


def _hits(translation, code: str) -> set[tuple[str, str]]:
    (result,) = [r for r in translation.results if r.code == code]
    return {(m.code, m.equivalence.value) for m in result.matches}


def test_behovskompassen_forward_covers_all_eight(vocab: Vocabulary) -> None:
    variant = vocab.get("variant-behovskompassen")
    codes = sorted(c.code for c in variant.concepts())
    t = vocab.translate(system="variant-behovskompassen", codes=codes)
    forward = {r.code: [m.code for m in r.matches] for r in t.results}
    assert forward == {
        "trygghet": ["safe"],
        "halsa": ["healthy"],
        "utveckling": ["achieving"],
        "omsorg": ["nurtured"],
        "fritid": ["active"],
        "respekteras": ["respected"],
        "ansvar": ["responsible"],
        "tillhorighet": ["included"],
    }
    assert t.unmatched == ()
    assert t.source == f"{CANONICAL_BASE}/CodeSystem/variant-behovskompassen"
    assert t.target == f"{CANONICAL_BASE}/CodeSystem/wellbeing-wheel" and t.target_version == "1.0.0"
    assert t.concept_map == f"{CANONICAL_BASE}/ConceptMap/variant-behovskompassen"


def test_behovskompassen_reverse_inverts_equivalence(vocab: Vocabulary) -> None:
    t = vocab.translate(system="variant-behovskompassen", codes=["included", "active", "safe"], reverse=True)
    assert _hits(t, "included") == {("tillhorighet", "narrower")}  # forward: tillhorighet → included is wider
    assert _hits(t, "active") == {("fritid", "wider")}  # forward: fritid → active is narrower
    assert _hits(t, "safe") == {("trygghet", "equivalent")}
    assert t.source.endswith("/wellbeing-wheel") and t.target.endswith("/variant-behovskompassen")
    match = t.results[0].matches[0]
    assert match.display.sv == "Tillhörighet" and match.comment is not None


def test_variant_accepts_canonical_url(vocab: Vocabulary) -> None:
    url = f"{CANONICAL_BASE}/ConceptMap/variant-behovskompassen"
    assert vocab.translate(system=url, codes=["halsa"]).results[0].matches[0].code == "healthy"


def test_one_to_many_returns_every_target(vocab: Vocabulary) -> None:
    t = vocab.translate(system=TEST_VARIANT, codes=["vaxa"])
    assert _hits(t, "vaxa") == {("achieving", "wider"), ("healthy", "relatedto")}


def test_many_to_one_reverse_returns_every_source(vocab: Vocabulary) -> None:
    # HAPI FHIR users report reverse lookups returning a single hit; we return all of them.
    t = vocab.translate(system=TEST_VARIANT, codes=["nurtured"], reverse=True)
    assert _hits(t, "nurtured") == {("hemma", "wider"), ("familj", "specializes")}


def test_unmatched_is_explicit_both_ways(vocab: Vocabulary) -> None:
    t = vocab.translate(system=TEST_VARIANT, codes=["tro", "utanfor-kartan", "lek", "vaxa"])
    assert t.unmatched == ("tro", "utanfor-kartan")
    assert _hits(t, "tro") == set() and _hits(t, "utanfor-kartan") == set()
    assert _hits(t, "lek") == {("active", "equivalent")}  # the disjoint target never translates
    assert len(t.results) == 4

    back = vocab.translate(system=TEST_VARIANT, codes=["safe", "included", "achieving", "healthy"], reverse=True)
    assert back.unmatched == ("safe", "included")  # safe is only a disjoint target
    assert _hits(back, "achieving") == {("vaxa", "narrower")}
    assert _hits(back, "healthy") == {("vaxa", "relatedto")}


def test_unknown_codes_are_validation_errors(vocab: Vocabulary) -> None:
    with pytest.raises(UnknownCode) as exc:
        vocab.translate(system=TEST_VARIANT, codes=["vaxa", "nope", "also-nope"])
    assert exc.value.field == "/codes/1" and exc.value.codes == ("nope", "also-nope")
    assert "nope" in exc.value.detail
    with pytest.raises(UnknownCode):
        vocab.translate(system=TEST_VARIANT, codes=["vaxa"], reverse=True)  # not a canonical code


def test_translate_needs_a_variant(vocab: Vocabulary) -> None:
    with pytest.raises(InvalidRequest):
        vocab.translate(system="wellbeing-wheel", codes=["safe"])


@pytest.mark.parametrize(
    ("forward", "backward"),
    [
        ("wider", "narrower"),
        ("narrower", "wider"),
        ("subsumes", "specializes"),
        ("specializes", "subsumes"),
        ("equivalent", "equivalent"),
        ("equal", "equal"),
        ("relatedto", "relatedto"),
        ("inexact", "inexact"),
    ],
)
def test_equivalence_inverse(forward: str, backward: str) -> None:
    assert Equivalence(forward).inverse() is Equivalence(backward)
    assert Equivalence(forward).translates


def test_unmatched_and_disjoint_never_translate() -> None:
    assert not Equivalence.unmatched.translates and not Equivalence.disjoint.translates


def test_crosswalk_and_variants(vocab: Vocabulary) -> None:
    names = [v.name for v in vocab.variants()]
    assert names == sorted(names) and {"variant-behovskompassen", TEST_VARIANT} <= set(names)
    spec = vocab.crosswalk("variant-behovskompassen")
    assert spec.target == "wellbeing-wheel" and len(spec.elements) == 8
