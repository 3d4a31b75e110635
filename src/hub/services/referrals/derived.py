"""What referrals read from the vocabulary, computed once per vocabulary: the lifecycle, code sets, the
wheel and crosswalk translations."""

from __future__ import annotations

import functools
import weakref

from hub.domain.errors import FieldError
from hub.domain.referrals import Lifecycle
from hub.domain.vocabulary import CodeSystemBase, Vocabulary
from hub.services.codes import SYSTEMS, unknown_codes

WHEEL = "wellbeing-wheel"


def lifecycle(vocabulary: Vocabulary) -> Lifecycle:
    """The referral lifecycle of the vocabulary's transition table (built once per vocabulary)."""
    return derived_for(vocabulary).lifecycle


class _Derived:
    """What referrals read from a vocabulary on every request, computed once per vocabulary: a loaded
    vocabulary never changes, and building code sets and concept lists anew cost a request a fifth of a
    millisecond."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self._vocabulary = weakref.ref(vocabulary)
        self._codes: dict[str, frozenset[str]] = {}
        self._translations: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {}

    @property
    def vocabulary(self) -> Vocabulary:
        vocabulary = self._vocabulary()
        assert vocabulary is not None
        return vocabulary

    @functools.cached_property
    def lifecycle(self) -> Lifecycle:
        return Lifecycle.of(self.vocabulary)

    @functools.cached_property
    def wheel(self) -> tuple[str, dict[str, str]]:
        """The canonical wheel's URL and the Swedish display of each of its codes."""
        doc = self.vocabulary.get(WHEEL)
        assert isinstance(doc, CodeSystemBase)
        return doc.url, {c.code: c.display.get("sv") for c in doc.concepts()}

    def known(self, system: str) -> frozenset[str]:
        if system not in self._codes:
            self._codes[system] = self.vocabulary.codes(SYSTEMS[system])
        return self._codes[system]

    def unknown_codes(self, system: str, codes: list[str], pointer: str) -> list[FieldError]:
        """As ``hub.services.codes.unknown_codes``; the code set looked up once."""
        known = self.known(system)
        if all(code in known for code in codes):
            return []
        return unknown_codes(self.vocabulary, system, codes, pointer)

    def translate(self, system: str, codes: list[str]) -> tuple[str, tuple[str, ...]]:
        """``Vocabulary.translate`` forward: the source system's URL and every match's code, in order
        (raising as it does). Only successful translations are kept, at most a few thousand."""
        key = (system, tuple(codes))
        found = self._translations.get(key)
        if found is None:
            translation = self.vocabulary.translate(system=system, codes=codes)
            found = (translation.source, tuple(m.code for r in translation.results for m in r.matches))
            if len(self._translations) >= 4096:
                self._translations.clear()
            self._translations[key] = found
        return found


_DERIVED: weakref.WeakKeyDictionary[Vocabulary, _Derived] = weakref.WeakKeyDictionary()


def derived_for(vocabulary: Vocabulary) -> _Derived:
    derived = _DERIVED.get(vocabulary)
    if derived is None:
        derived = _DERIVED[vocabulary] = _Derived(vocabulary)
    return derived
