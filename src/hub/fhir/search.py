"""FHIR R4 search over the terminology resources: the parameters, matching, ``_summary``, paging and the
``Prefer: handling`` rule for parameters the hub does not support. Pure functions; no I/O, no web.

Supported: ``_id``, ``url`` (``url|version`` pins a version), ``version``, ``name`` (starts with, any
case, or the id), ``status`` (token), each with comma-separated alternatives (OR) and repeatable (AND);
``_count`` (page size; ``0`` is the total only) and ``_summary`` (``true``, ``text``, ``data``, ``count``,
``false``). ``_offset`` is what a ``next`` link carries. An unsupported parameter is an error with
``Prefer: handling=strict`` and is otherwise ignored and left out of the Bundle's ``self`` link, which
names the parameters the search used (R4 search §3.1.1.5.4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

PUBLICATION_STATUS = "http://hl7.org/fhir/publication-status"
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
CRITERIA = ("_id", "url", "version", "name", "status")
RESULT_PARAMETERS = ("_count", "_summary", "_offset")
SUMMARY_MODES = ("true", "text", "data", "count", "false")
MAX_COUNT = 1000

# The elements R4 marks isSummary (checked against fhir.resources in tests/fhir/test_fhir_search.py).
_COMMON_SUMMARY = frozenset(
    {"resourceType", "id", "meta", "implicitRules", "url", "identifier", "version", "name", "title", "status"}
    | {"experimental", "date", "publisher", "contact", "useContext", "jurisdiction"}
)
SUMMARY_ELEMENTS: Mapping[str, frozenset[str]] = {
    "CodeSystem": _COMMON_SUMMARY
    | {"caseSensitive", "valueSet", "hierarchyMeaning", "compositional", "versionNeeded", "content"}
    | {"supplements", "count", "filter", "property"},
    "ValueSet": _COMMON_SUMMARY | {"immutable"},
    "ConceptMap": _COMMON_SUMMARY | {"sourceUri", "sourceCanonical", "targetUri", "targetCanonical"},
}
# _summary=text keeps text, id, meta and the mandatory top-level elements.
_MANDATORY: Mapping[str, frozenset[str]] = {
    "CodeSystem": frozenset({"resourceType", "id", "meta", "text", "status", "content"}),
    "ValueSet": frozenset({"resourceType", "id", "meta", "text", "status"}),
    "ConceptMap": frozenset({"resourceType", "id", "meta", "text", "status"}),
}


class SearchParameterError(ValueError):
    """A supported parameter with a value it cannot take (``param`` names it)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class UnsupportedParameters(ValueError):
    """Parameters this search does not support, under ``Prefer: handling=strict``."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(f"Unsupported search parameters: {', '.join(names)}.")
        self.names = tuple(names)


def strict_handling(prefer: str | None, *, default: bool = False) -> bool:
    """Whether the ``Prefer`` header asks for ``handling=strict`` (``lenient``: False; neither: ``default``)."""
    for part in (prefer or "").replace(";", ",").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "handling":
            handling = value.strip().strip('"').lower()
            if handling in ("strict", "lenient"):
                return handling == "strict"
    return default


def unsupported(items: Iterable[tuple[str, str]], supported: Iterable[str]) -> list[str]:
    """The names among ``items`` that are not ``supported``, sorted, each once."""
    known = set(supported)
    return sorted({name for name, _ in items if name not in known})


@dataclass(frozen=True)
class TerminologySearch:
    """A parsed search: ``criteria`` (name, alternatives) all of which must match; ``used`` the query items
    the search honoured, in order (the ``self`` link), ``ignored`` the names it did not."""

    criteria: tuple[tuple[str, tuple[str, ...]], ...]
    count: int | None
    offset: int
    summary: str
    used: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...]


def _number(param: str, raw: str, upper: int) -> int:
    if not raw.isdigit() or int(raw) > upper:
        raise SearchParameterError(param, f"{param} is a whole number from 0 to {upper}")
    return int(raw)


def parse_search(items: Sequence[tuple[str, str]], *, strict: bool) -> TerminologySearch:
    """The search from the query's ``items``; raises :class:`UnsupportedParameters` (strict only) or
    :class:`SearchParameterError`. An empty value is ignored, as R4 says."""
    ignored = unsupported(items, (*CRITERIA, *RESULT_PARAMETERS))
    if ignored and strict:
        raise UnsupportedParameters(ignored)
    used = tuple((k, v) for k, v in items if k not in ignored and v != "")
    criteria = tuple((k, tuple(v.split(","))) for k, v in used if k in CRITERIA)
    result = {k: v for k, v in used if k in RESULT_PARAMETERS}  # the last one given counts
    summary = result.get("_summary", "false")
    if summary not in SUMMARY_MODES:
        raise SearchParameterError("_summary", f"_summary is one of {', '.join(SUMMARY_MODES)}")
    count = _number("_count", result["_count"], MAX_COUNT) if "_count" in result else None
    offset = _number("_offset", result["_offset"], 10**6) if "_offset" in result else 0
    return TerminologySearch(criteria, count, offset, summary, used, tuple(ignored))


def _one(resource: Mapping[str, Any], param: str, value: str) -> bool:
    if param == "_id":
        return bool(resource["id"] == value)
    if param == "url":
        url, bar, version = value.partition("|")
        return bool(resource["url"] == url and (not bar or resource["version"] == version))
    if param == "version":
        return bool(resource["version"] == value)
    if param == "status":
        system, bar, code = value.rpartition("|")
        return (not bar or system in ("", PUBLICATION_STATUS)) and resource["status"] == code
    return bool(resource["name"].lower().startswith(value.lower()) or resource["id"] == value)


def matches(resource: Mapping[str, Any], search: TerminologySearch) -> bool:
    """Whether ``resource`` meets every criterion (each by one of its alternatives)."""
    return all(any(_one(resource, param, v) for v in values) for param, values in search.criteria)


def pins_version(search: TerminologySearch) -> bool:
    """Whether the search names versions (``version``, ``url|version``): else ``_id`` finds the latest."""
    return any(p == "version" or (p == "url" and any("|" in v for v in vs)) for p, vs in search.criteria)


def names_ids(search: TerminologySearch) -> bool:
    return any(p == "_id" for p, _ in search.criteria)


def summarised(resource: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """``resource`` as ``_summary`` ``mode`` (``true``/``text``) returns it, tagged SUBSETTED; else as is."""
    rtype = resource["resourceType"]
    if mode not in ("true", "text"):
        return dict(resource)
    keep = SUMMARY_ELEMENTS[rtype] if mode == "true" else _MANDATORY[rtype]
    body = {k: v for k, v in resource.items() if k in keep}
    meta = dict(body.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    body["meta"] = meta
    return body


def search_url(base: str, items: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(items), safe=":|/,")
    return base + (f"?{query}" if query else "")


def paged_links(base: str, search: TerminologySearch, total: int) -> list[dict[str, str]]:
    """The Bundle's links: ``self`` (the parameters used) and, when more matches follow, ``next``."""
    links = [{"relation": "self", "url": search_url(base, search.used)}]
    if search.count and search.offset + search.count < total:
        rest = [(k, v) for k, v in search.used if k != "_offset"]
        links.append(
            {"relation": "next", "url": search_url(base, [*rest, ("_offset", str(search.offset + search.count))])}
        )
    return links


def operation_outcome(names: Sequence[str], *, code: str = "not-supported") -> dict[str, Any]:
    """An OperationOutcome naming each rejected search parameter (an error issue per parameter)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": code,
                "details": {"text": f"The search parameter {name!r} is not supported here."},
                "diagnostics": name,
                "location": [f"http.{name}"],  # R4: "http." + the parameter name for HTTP errors
            }
            for name in names
        ],
    }
