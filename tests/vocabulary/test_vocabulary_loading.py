"""Every packaged vocabulary file loads, validates and keeps its published checksum."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hub.domain.vocabulary import (
    CANONICAL_BASE,
    CodeSystemBase,
    InvalidVocabulary,
    LocalizedText,
    UnknownVersion,
    UnknownVocabulary,
    Vocabulary,
    checksum_of,
    parse_document,
)
from hub.vocabulary import (
    DATA_DIR,
    load_documents,
    load_vocabulary,
    read_file,
    read_lock,
    unpublished_changes,
)

FIXTURES = Path(__file__).parent / "fixtures"
PACKAGED = sorted(p for p in DATA_DIR.rglob("*") if p.suffix in (".yaml", ".json"))
EXPECTED_NAMES = {
    "wellbeing-wheel",
    "variant-behovskompassen",
    "my-world-triangle",
    "resilience-matrix",
    "five-questions",
    "practice-model-steps",
    "intervention-levels",
    "organisation-types",
    "referral-kinds",
    "referral-statuses",
    "rejection-reasons",
    "data-categories",
    "legal-bases",
    "life-stages",
    "child-plan",
    "concern-answers",
}


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary()


@pytest.mark.parametrize("path", PACKAGED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_packaged_file_validates(path: Path) -> None:
    doc = parse_document(read_file(path), source=str(path))
    assert (doc.name, doc.version) == (path.parent.name, path.stem)
    assert doc.status.value == "active"


def test_all_v1_vocabularies_are_published(vocab: Vocabulary) -> None:
    assert set(vocab.names()) == EXPECTED_NAMES
    assert {e.name for e in vocab.index() if e.version == "1.0.0"} == EXPECTED_NAMES
    # legal-bases 2.0.0 (dated statutes, issue #14), child-plan 1.1.0 (sections as data categories, issue #12),
    # life-stages 1.1.0 (each stage's expected end, issue #12) and data-categories 1.1.0 (concern-answer,
    # issue #14 §2) are the defaults; their 1.0.0 stay published.
    latest = {e.name: e.version for e in vocab.index() if e.latest}
    newer = {"legal-bases": "2.0.0", "child-plan": "1.1.0", "life-stages": "1.1.0", "data-categories": "1.1.0"}
    assert latest == {name: newer.get(name, "1.0.0") for name in EXPECTED_NAMES}


def test_published_versions_never_change() -> None:
    changed, new = unpublished_changes(load_documents(), read_lock())
    assert changed == [], "published files changed; publish a new version file instead"
    assert new == [], "new version files must be recorded: python -m hub.vocabulary lock"


def test_index_checksums_match_files(vocab: Vocabulary) -> None:
    for entry in vocab.index():
        assert entry.checksum.startswith("sha256:") and len(entry.checksum) == 7 + 64
        assert entry.checksum == vocab.checksum(entry.name, entry.version)
        path = next(DATA_DIR.glob(f"{entry.name}/{entry.version}.*"))
        assert entry.checksum == checksum_of(read_file(path))


def test_checksum_is_over_canonical_json() -> None:
    assert checksum_of({"b": 1, "a": {"y": "å", "x": [1, 2]}}) == checksum_of({"a": {"x": [1, 2], "y": "å"}, "b": 1})
    assert checksum_of({"a": 1}) != checksum_of({"a": 2})


def test_code_systems_render_flat_concepts(vocab: Vocabulary) -> None:
    for name in vocab.names():
        doc = vocab.get(name)
        if not isinstance(doc, CodeSystemBase):
            continue
        assert doc.url == f"{CANONICAL_BASE}/CodeSystem/{name}"
        concepts = doc.concepts()
        assert concepts and len({c.code for c in concepts}) == len(concepts)
        for c in concepts:
            assert isinstance(c.display, LocalizedText) and c.display.sv and c.display.en
            assert isinstance(c.properties, dict)


def test_unknown_name_and_version(vocab: Vocabulary) -> None:
    with pytest.raises(UnknownVocabulary) as exc:
        vocab.get("no-such-thing")
    assert exc.value.field == "name"
    with pytest.raises(UnknownVersion) as exc2:
        vocab.get("wellbeing-wheel", "9.9.9")
    assert exc2.value.field == "version"


def test_document_json_languages(vocab: Vocabulary) -> None:
    both = vocab.document_json("wellbeing-wheel")
    assert both["indicators"][0]["label"] == {"sv": "Trygg", "en": "Safe"}
    assert both["url"] == f"{CANONICAL_BASE}/CodeSystem/wellbeing-wheel"
    sv = vocab.document_json("wellbeing-wheel", lang="sv")
    en = vocab.document_json("wellbeing-wheel", "1.0.0", lang="en")
    assert sv["indicators"][0]["label"] == "Trygg" and en["indicators"][0]["label"] == "Safe"
    assert sv["title"] == "Välbefinnandehjulet"
    assert isinstance(en["indicators"][0]["questions"]["child"][0], str)
    plan = vocab.document_json("child-plan", lang="en")
    assert plan["schema"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert plan["sections"][0]["label"] == "Reasons for the plan"


def test_document_json_rejects_other_languages(vocab: Vocabulary) -> None:
    from hub.domain.vocabulary import InvalidRequest

    with pytest.raises(InvalidRequest):
        vocab.document_json("wellbeing-wheel", lang="fi")


# -------------------------------------------------------------------------------- extra directories
def _packaged(name: str) -> dict:
    return read_file(next(DATA_DIR.glob(f"{name}/1.0.0.*")))


def _write(directory: Path, filename: str, content: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(yaml.safe_dump(content, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_fixture_variant_loads_from_extra_dir() -> None:
    vocab = load_vocabulary([FIXTURES / "variants"])
    assert "variant-test-livsblomma" in {v.name for v in vocab.variants()}
    assert "variant-behovskompassen" in {v.name for v in vocab.variants()}


def test_dropped_in_variant_needs_no_code_change(tmp_path: Path) -> None:
    region = _packaged("variant-behovskompassen")
    region.update(name="variant-orebrohjulet", title={"sv": "Örebrohjulet (test)", "en": "The Örebro wheel (test)"})
    _write(tmp_path / "orebro", "anything-goes.yml", region)
    vocab = load_vocabulary([str(tmp_path)])
    result = vocab.translate(system="variant-orebrohjulet", codes=["trygghet"])
    assert [m.code for m in result.results[0].matches] == ["safe"]


def test_identical_republication_is_harmless(tmp_path: Path) -> None:
    _write(tmp_path, "copy.yaml", _packaged("wellbeing-wheel"))
    assert load_vocabulary([tmp_path]).checksum("wellbeing-wheel") == load_vocabulary().checksum("wellbeing-wheel")


def test_conflicting_republication_is_rejected(tmp_path: Path) -> None:
    changed = _packaged("wellbeing-wheel")
    changed["title"] = {"sv": "Ändrat", "en": "Changed"}
    path = _write(tmp_path, "wheel.yaml", changed)
    with pytest.raises(InvalidVocabulary) as exc:
        load_vocabulary([tmp_path])
    assert str(path) in exc.value.detail and "never change" in exc.value.detail


def test_new_version_from_extra_dir_becomes_latest(tmp_path: Path) -> None:
    newer = _packaged("rejection-reasons")
    newer["version"] = "1.1.0"
    _write(tmp_path, "rr.yaml", newer)
    vocab = load_vocabulary([tmp_path])
    assert vocab.versions("rejection-reasons") == ["1.0.0", "1.1.0"]
    latest = {(e.name, e.version): e.latest for e in vocab.index()}
    assert latest[("rejection-reasons", "1.1.0")] and not latest[("rejection-reasons", "1.0.0")]


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (
            lambda d: d["map"]["elements"][0]["targets"][0].update(code="happy"),
            "/map/elements/0/targets/0/code",
            "'happy' is not a code",
        ),
        (
            lambda d: d["map"]["elements"][0].update(source="nope"),
            "/map/elements/0/source",
            "unknown map source",
        ),
        (lambda d: d["map"].update(target_version="2.0.0"), "/map/target_version", "not published"),
        (lambda d: d.update(version="1.0"), "/version", "semantic version"),
        (lambda d: d["concept"][0]["label"].pop("sv"), "/concept/0/label/sv", "Field required"),
        (
            lambda d: d["map"]["elements"][1]["targets"][0].pop("comment"),
            "/map/elements/1/targets/0",
            "needs a comment",
        ),
        (lambda d: d.update(name="orebrohjulet"), "/", "starts with 'variant-'"),
    ],
    ids=["target-code", "source-code", "target-version", "semver", "missing-sv", "comment", "name"],
)
def test_bad_variant_fails_loudly_naming_file_and_field(tmp_path: Path, mutate, field: str, words: str) -> None:
    bad = _packaged("variant-behovskompassen")
    bad.update(name="variant-bad")
    mutate(bad)
    path = _write(tmp_path, "bad.yaml", bad)
    with pytest.raises(InvalidVocabulary) as exc:
        load_vocabulary([tmp_path])
    assert str(path) in exc.value.detail
    assert exc.value.field.startswith(field) and words in exc.value.detail


def test_missing_extra_dir_fails(tmp_path: Path) -> None:
    with pytest.raises(InvalidVocabulary, match="does not exist"):
        load_vocabulary([tmp_path / "missing"])


def test_registry_is_immutable(vocab: Vocabulary) -> None:
    doc = vocab.get("organisation-types")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        doc.version = "2.0.0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        vocab._docs["x"] = {}  # type: ignore[index]


def test_the_documented_example_variant_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "vocabulary.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.yaml").write_text(example, encoding="utf-8")
    vocab = load_vocabulary([tmp_path])
    t = vocab.translate(system="variant-exempelhjulet", codes=["trygg-uppvaxt", "livsfragor"])
    assert {m.code for m in t.results[0].matches} == {"safe", "nurtured"}
    assert t.unmatched == ("livsfragor",)
    back = vocab.translate(system="variant-exempelhjulet", codes=["active"], reverse=True)
    assert [(m.code, m.equivalence.value) for m in back.results[0].matches] == [("skola-och-fritid", "wider")]
