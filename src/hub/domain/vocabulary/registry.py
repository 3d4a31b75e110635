"""The Vocabulary: the immutable registry the API layers render from, with translation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from hub.domain.vocabulary.base import (
    CANONICAL_BASE,
    CANONICAL_WHEEL,
    CodeSystemBase,
    InvalidVocabulary,
    LocalizedText,
    Status,
    UnknownCode,
    UnknownVersion,
    UnknownVocabulary,
    _Frozen,
)
from hub.domain.vocabulary.codes import LifeStagesDoc, ReferralStatusesDoc, ReferralTransition, VocabularyDocument
from hub.domain.vocabulary.parsing import InvalidRequest, LoadedDocument, semver_key
from hub.domain.vocabulary.wheel import ConceptMapSpec, Equivalence, VariantDoc, WellbeingWheelDoc


# ------------------------------------------------------------------------------------- the registry
class VocabularyEntry(_Frozen):
    """One published (name, version) in the index."""

    name: str
    version: str
    kind: str
    title: LocalizedText
    status: Status
    checksum: str
    latest: bool
    url: str | None = None


class TranslationMatch(_Frozen):
    """One translation of an input code, with the map's equivalence read in the asked direction."""

    code: str
    display: LocalizedText
    equivalence: Equivalence
    comment: LocalizedText | None = None


class TranslationResult(_Frozen):
    """Every match of one input code; ``matches`` is empty when the code is unmatched."""

    code: str
    matches: tuple[TranslationMatch, ...]


class Translation(_Frozen):
    """The outcome of translating codes through one variant's crosswalk.

    ``source``/``target`` are the canonical URLs of the systems the codes come from and go to
    (reversed when ``reverse`` is true). ``unmatched`` lists, explicitly, every input code with no match.
    """

    variant: str
    variant_version: str
    concept_map: str
    reverse: bool
    source: str
    source_version: str
    target: str
    target_version: str
    results: tuple[TranslationResult, ...]
    unmatched: tuple[str, ...]


def localize(value: Any, lang: str) -> Any:
    """Collapse every ``{"sv": …, "en": …}`` in JSON-ready data to ``lang``; ``schema`` values stay."""
    if isinstance(value, dict):
        if value.keys() == {"sv", "en"} and all(isinstance(v, str) for v in value.values()):
            return value[lang]
        return {k: v if k == "schema" else localize(v, lang) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, lang) for v in value]
    return value


_localize = localize  # kept for callers that imported the private name

CODE_SYSTEMS = {
    "data-category": "data-categories",
    "organisation-type": "organisation-types",
    "referral-kind": "referral-kinds",
    "legal-basis": "legal-bases",
    "wellbeing-indicator": "wellbeing-wheel",
}
"""Code-system vocabularies by the singular names the policy and error messages use for their codes."""


class Vocabulary:
    """The loaded, validated, immutable registry of every vocabulary version.

    Build it from :class:`LoadedDocument` objects (``hub.vocabulary.load_vocabulary`` does). Construction
    checks what single files cannot: a (name, version) published twice with different content, and
    every crosswalk's target system, version and codes.
    """

    def __init__(self, documents: Iterable[LoadedDocument]) -> None:
        by_name: dict[str, dict[str, LoadedDocument]] = {}
        for loaded in documents:
            doc = loaded.document
            versions = by_name.setdefault(doc.name, {})
            if (seen := versions.get(doc.version)) is not None:
                if seen.checksum != loaded.checksum:
                    raise InvalidVocabulary(
                        f"{loaded.source}: {doc.name} {doc.version} is already published by {seen.source} "
                        "with different content; published versions never change, publish a new version",
                        field="/version",
                    )
                continue
            versions[doc.version] = loaded
        self._docs: Mapping[str, Mapping[str, LoadedDocument]] = MappingProxyType(
            {
                n: MappingProxyType(dict(sorted(v.items(), key=lambda kv: semver_key(kv[0]))))
                for n, v in sorted(by_name.items())
            }
        )
        self._latest: Mapping[str, str] = MappingProxyType({n: self._pick_latest(v) for n, v in self._docs.items()})
        for published in self._docs.values():
            for loaded in published.values():
                if isinstance(loaded.document, VariantDoc):
                    self._check_map(loaded)
                if isinstance(loaded.document, LifeStagesDoc):
                    self._check_stages(loaded)
        # Every request checks its codes against these sets; published versions never change, so each
        # is built once.
        self._codes: dict[tuple[str, str | None], frozenset[str]] = {}

    @staticmethod
    def _pick_latest(versions: Mapping[str, LoadedDocument]) -> str:
        active = [v for v, d in versions.items() if d.document.status is Status.active]
        return (active or list(versions))[-1]

    def _check_stages(self, loaded: LoadedDocument) -> None:
        """Every organisation type a life stage names is one the latest organisation-types defines."""
        doc = loaded.document
        assert isinstance(doc, LifeStagesDoc)
        types = self._docs.get("organisation-types", {})
        known = {
            c.code for d in types.values() if isinstance(d.document, CodeSystemBase) for c in d.document.concepts()
        }
        for i, stage in enumerate(doc.concept):
            if missing := sorted(set(stage.organisation_types) - known):
                raise InvalidVocabulary(
                    f"{loaded.source}: stage {stage.code!r} names unknown organisation type(s): {', '.join(missing)}",
                    field=f"/concept/{i}/organisation_types",
                )

    def _check_map(self, loaded: LoadedDocument) -> None:
        doc = loaded.document
        assert isinstance(doc, VariantDoc)
        spec = doc.map
        target = self._docs.get(spec.target, {}).get(spec.target_version)
        if target is None or not isinstance(target.document, CodeSystemBase):
            raise InvalidVocabulary(
                f"{loaded.source}: /map: target code system {spec.target} {spec.target_version} is not published",
                field="/map/target_version",
            )
        known = target.document.codes()
        for i, element in enumerate(spec.elements):
            for j, t in enumerate(element.targets):
                if t.code is not None and t.code not in known:
                    pointer = f"/map/elements/{i}/targets/{j}/code"
                    raise InvalidVocabulary(
                        f"{loaded.source}: {pointer}: {t.code!r} is not a code of {spec.target} {spec.target_version}",
                        field=pointer,
                    )

    # -- lookup
    def _loaded(self, name: str, version: str | None = None) -> LoadedDocument:
        versions = self._docs.get(name)
        if versions is None:
            raise UnknownVocabulary(f"no vocabulary named {name!r}", field="name")
        found: LoadedDocument | None = versions.get(version or self._latest[name])
        if found is None:
            raise UnknownVersion(
                f"{name} has no version {version!r} (published: {', '.join(versions)})", field="version"
            )
        return found

    def names(self) -> list[str]:
        """Every vocabulary name, sorted."""
        return list(self._docs)

    def versions(self, name: str) -> list[str]:
        """Every published version of ``name``, oldest first."""
        self._loaded(name)
        return list(self._docs[name])

    def latest_version(self, name: str) -> str:
        """The version :meth:`get` returns when no version is given."""
        self._loaded(name)
        return self._latest[name]

    def index(self) -> list[VocabularyEntry]:
        """One entry per (name, version), sorted by name and version."""
        return [
            VocabularyEntry(
                name=n,
                version=v,
                kind=d.document.kind,
                title=d.document.title,
                status=d.document.status,
                checksum=d.checksum,
                latest=self._latest[n] == v,
                url=d.document.url if isinstance(d.document, CodeSystemBase) else None,
            )
            for n, versions in self._docs.items()
            for v, d in versions.items()
        ]

    def get(self, name: str, version: str | None = None) -> VocabularyDocument:
        """The document ``name`` in ``version`` (the latest when None)."""
        return self._loaded(name, version).document

    def checksum(self, name: str, version: str | None = None) -> str:
        """``sha256:<hex>`` of the published file."""
        return self._loaded(name, version).checksum

    def document_json(self, name: str, version: str | None = None, lang: str | None = None) -> dict[str, Any]:
        """JSON-ready content; with ``lang`` "sv" or "en" every bilingual text collapses to that language."""
        if lang not in (None, "sv", "en"):
            raise InvalidRequest(f"unsupported language {lang!r}; use 'sv' or 'en'", field="lang")
        doc = self.get(name, version)
        data: dict[str, Any] = doc.model_dump(mode="json", by_alias=True)
        if isinstance(doc, CodeSystemBase):
            data["url"] = doc.url
        if isinstance(doc, VariantDoc):
            data["concept_map_url"] = doc.concept_map_url
        return data if lang is None else dict(localize(data, lang))

    def codes(self, name: str, version: str | None = None) -> frozenset[str]:
        """Every code of a code-system vocabulary (e.g. ``codes("data-categories")``)."""
        known = self._codes.get((name, version))
        if known is None:
            doc = self.get(name, version)
            if not isinstance(doc, CodeSystemBase):
                raise InvalidRequest(f"{name} is not a code system", field="name")
            known = self._codes[(name, version)] = doc.codes()
        return known

    def indicator_codes(self, version: str | None = None) -> frozenset[str]:
        """The eight canonical wellbeing indicator codes (without the goals)."""
        doc = self.get(CANONICAL_WHEEL, version)
        assert isinstance(doc, WellbeingWheelDoc)
        return doc.indicator_codes()

    def referral_transitions(self, version: str | None = None) -> list[ReferralTransition]:
        """The referral status transition table."""
        doc = self.get("referral-statuses", version)
        assert isinstance(doc, ReferralStatusesDoc)
        return list(doc.transitions)

    # -- variants and translation
    def variants(self) -> list[VariantDoc]:
        """The latest version of every wheel variant, by name."""
        return [d for n in self._docs if isinstance(d := self.get(n), VariantDoc)]

    def variant(self, system: str, version: str | None = None) -> VariantDoc:
        """A variant by name or canonical URL (CodeSystem or ConceptMap)."""
        name = system.rsplit("/", 1)[-1] if system.startswith(CANONICAL_BASE + "/") else system
        doc = self._loaded(name, version).document
        if not isinstance(doc, VariantDoc):
            raise InvalidRequest(f"{name} is not a wheel variant", field="system")
        return doc

    def crosswalk(self, variant_name: str, version: str | None = None) -> ConceptMapSpec:
        """The crosswalk of a variant onto the canonical wheel."""
        return self.variant(variant_name, version).map

    def translate(
        self, *, system: str, codes: list[str], reverse: bool = False, version: str | None = None
    ) -> Translation:
        """Translate ``codes`` through a variant's crosswalk.

        Forward: variant codes → target (canonical wheel) codes. Reverse: target codes → variant codes,
        with each equivalence inverted (wider ↔ narrower, subsumes ↔ specializes). Every input code gets
        *all* its matches; unmatched/disjoint mappings never translate, and codes without a match are
        listed in ``unmatched``. Codes unknown to the source system raise :class:`UnknownCode`.
        """
        variant = self.variant(system, version)
        spec = variant.map
        target = self.get(spec.target, spec.target_version)
        assert isinstance(target, CodeSystemBase)
        variant_display = {c.code: c.display for c in variant.concepts()}
        target_display = {c.code: c.display for c in target.concepts()}
        index = _match_index(spec, variant_display, target_display, reverse=reverse)
        known = target_display if reverse else variant_display
        unknown = [(i, c) for i, c in enumerate(codes) if c not in known]
        if unknown:
            src = spec.target if reverse else variant.name
            raise UnknownCode(
                f"not code(s) of {src}: {', '.join(c for _, c in unknown)}",
                field=f"/codes/{unknown[0][0]}",
                codes=[c for _, c in unknown],
            )
        results = tuple(TranslationResult(code=c, matches=tuple(index.get(c, ()))) for c in codes)
        unmatched = tuple(dict.fromkeys(r.code for r in results if not r.matches))
        variant_side = (variant.url, variant.version)
        target_side = (target.url, target.version)
        if reverse:
            variant_side, target_side = target_side, variant_side
        (src_url, src_v), (tgt_url, tgt_v) = variant_side, target_side
        return Translation(
            variant=variant.name,
            variant_version=variant.version,
            concept_map=variant.concept_map_url,
            reverse=reverse,
            source=src_url,
            source_version=src_v,
            target=tgt_url,
            target_version=tgt_v,
            results=results,
            unmatched=unmatched,
        )


def _match_index(
    spec: ConceptMapSpec,
    variant_display: Mapping[str, LocalizedText],
    target_display: Mapping[str, LocalizedText],
    *,
    reverse: bool,
) -> dict[str, list[TranslationMatch]]:
    """Every translating mapping of ``spec`` by the code it translates from: a variant code forward, a
    target code in ``reverse`` (its equivalence inverted). Unmatched and disjoint mappings are left out."""
    index: dict[str, list[TranslationMatch]] = {}
    for element in spec.elements:
        for t in element.targets:
            if t.code is None or not t.equivalence.translates:
                continue
            if reverse:
                key, code, display = t.code, element.source, variant_display[element.source]
                equivalence = t.equivalence.inverse()
            else:
                key, code, display, equivalence = element.source, t.code, target_display[t.code], t.equivalence
            match = TranslationMatch(code=code, display=display, equivalence=equivalence, comment=t.comment)
            index.setdefault(key, []).append(match)
    return index
