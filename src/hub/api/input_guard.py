"""What no handler may ever see, refused at the edge: NUL characters, unpaired UTF-16 surrogates, JSON nested
absurdly deep, numbers JSON does not have (NaN, infinities) and overlong identifiers in the path.

PostgreSQL stores no NUL in text, asyncpg cannot encode a lone surrogate, and Python's JSON parser and
encoder recurse once per level, so each of these used to reach a handler and end in a 500. The middleware
runs these checks before routing, once, for REST, GraphQL and FHIR alike. The usual request pays for a few
C-level scans (``in``, ``bytes.count``, one regex search); only a request that trips one of them is parsed
further, to name the offending field (a JSON pointer into the body, or the parameter's or header's name).
"""

from __future__ import annotations

import json
import math
import re
import weakref
from collections import deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from starlette.types import Scope

from hub.domain.errors import FieldError, InvalidInput

# Real bodies nest a handful of levels; 64 leaves room for any plan while staying far from the ~1,000 at
# which the JSON parser or encoder would raise RecursionError.
MAX_JSON_DEPTH = 64
# Every identifier the hub issues or stores is at most 64 characters (its String(64) columns; FHIR ids too).
MAX_PATH_PARAM = 64
_MAX_ERRORS = 10

# A JSON escape of NUL or of a surrogate, or a surrogate encoded as UTF-8 bytes (Python's JSON parser reads
# those with "surrogatepass"). A hit is only a suspicion: a valid pair, or an escaped backslash, matches too.
# Two patterns, each starting with a literal, because one alternation is five times slower to scan.
_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")
# Python's parser also reads NaN and Infinity, and makes an exponent past 308 an infinity: none is JSON,
# and each would leave the hub as "NaN" or "Infinity" for a receiver to choke on. An exponent of three
# digits is the suspicion, found with the digits made zeros (one C pass, where a regex starting with a
# class takes ten times longer): only then is the body parsed to find the number.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789E", b"000000000e")
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?|[\[\]{},]')
_OPEN = frozenset(b"[{")


def check_headers(headers: Iterable[tuple[bytes, bytes]]) -> InvalidInput | None:
    names = [name.decode("latin-1").lower() for name, value in headers if b"\x00" in value]
    return _refusal([_nul(name) for name in names])


def check_path(scope: Scope) -> InvalidInput | None:
    """NUL or an overlong segment in the path, named by the parameter of the documented route it fits."""
    path: str = scope["path"]
    if "\x00" not in path and (len(path) <= MAX_PATH_PARAM or max(map(len, path.split("/"))) <= MAX_PATH_PARAM):
        return None
    segments = path.split("/")
    bad = [i for i, segment in enumerate(segments) if "\x00" in segment or len(segment) > MAX_PATH_PARAM]
    names = _parameter_names(scope.get("app"), segments)
    errors = []
    for i in bad:
        name = names.get(i, "path")
        if "\x00" in segments[i]:
            errors.append(_nul(name))
        else:
            errors.append(FieldError(name, f"Longer than {MAX_PATH_PARAM} characters: no such identifier.", "too-long"))
    return _refusal(errors)


def check_query(query_string: bytes) -> InvalidInput | None:
    """NUL in a parameter, and in a parameter holding JSON (GraphQL's ``variables``) what a body may not hold."""
    if not query_string:
        return None
    raw = unquote_to_bytes(query_string)
    if b"\x00" not in raw and not _deep_suspect(raw) and not _suspect(raw):
        return None
    errors: list[FieldError] = []
    # Decoded as Starlette decodes it: invalid UTF-8 becomes U+FFFD, so only NUL survives in a plain value.
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            errors.append(_nul(_printable(name)))
        else:
            errors.extend(_json_errors(value.encode(), prefix=name))
    return _refusal(errors)


def check_json_body(body: bytes) -> InvalidInput | None:
    if b"\x00" in body:
        # Raw NUL is never valid UTF-8 JSON; refusing it also refuses UTF-16 and UTF-32 bodies, which
        # Python's parser would accept and whose escapes the byte scans above would not see.
        return _refusal([FieldError("", "The body must be JSON in UTF-8, without NUL bytes.", "nul-byte")])
    errors = _json_errors(body, prefix="")
    if not errors:
        try:
            body.decode("utf-8")  # C speed; Python's parser would let bytes of a lone surrogate through
        except UnicodeDecodeError:
            errors = [FieldError("", "The body is not valid UTF-8.", "invalid-utf-8")]
    return _refusal(errors)


def check_text_body(body: bytes) -> InvalidInput | None:
    """A non-JSON body (``application/graphql``): NUL bytes and invalid UTF-8 (surrogates included)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _refusal([FieldError("", "The body is not valid UTF-8.", "invalid-utf-8")])
    return _refusal([FieldError("", _NUL_MESSAGE, "nul-character")] if "\x00" in text else [])


# --------------------------------------------------------------------------------------------- helpers
_NUL_MESSAGE = "Contains a NUL character, which the hub accepts in no text."
_NON_FINITE_MESSAGE = "Not a finite number (JSON has no NaN or Infinity; doubles end near 1.8e308)."
_SURROGATE_MESSAGE = "Contains an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not a character."


def _refusal(errors: list[FieldError]) -> InvalidInput | None:
    if not errors:
        return None
    errors = errors[:_MAX_ERRORS]
    detail = "; ".join(f"{e.pointer or '(body)'}: {e.message}" for e in errors[:3])
    return InvalidInput(detail, errors=errors)


def _nul(pointer: str) -> FieldError:
    return FieldError(pointer, _NUL_MESSAGE, "nul-character")


def _parameter_names(app: Any, segments: list[str]) -> dict[int, str]:
    """Segment index → parameter name, from the first documented path template the segments fit."""
    for template in _templates(app):
        if len(template) == len(segments) and all(
            t.startswith("{") or t == s for t, s in zip(template, segments, strict=True)
        ):
            return {i: t.strip("{}") for i, t in enumerate(template) if t.startswith("{")}
    return {}


_TEMPLATES: weakref.WeakKeyDictionary[Any, list[list[str]]] = weakref.WeakKeyDictionary()


def _templates(app: Any) -> list[list[str]]:
    """The OpenAPI document's paths, split into segments: read once per app, on the first path refused."""
    if app is None or not hasattr(app, "openapi"):
        return []
    if app not in _TEMPLATES:
        _TEMPLATES[app] = [p.split("/") for p in app.openapi().get("paths", {})]
    return _TEMPLATES[app]


def _json_errors(data: bytes, *, prefix: str) -> list[FieldError]:
    """Too deep, strings (keys too) with NUL or lone surrogates, numbers that are not finite; nothing when
    ``data`` is not JSON."""
    deep = _too_deep(data)
    if deep is not None:
        message = f"Nests deeper than {MAX_JSON_DEPTH} levels."
        return [FieldError(_join(prefix, deep), message, "too-deep")]
    if not _suspect(data):
        return []
    try:
        document = json.loads(data, parse_constant=_non_finite, parse_float=_finite_or_marked)
    except (ValueError, RecursionError):
        return []  # not JSON: the handler says so, or treats it as the plain text it is
    return _bad_values(document, prefix)


def _suspect(data: bytes) -> bool:
    return (
        _ESCAPE.search(data) is not None
        or (b"\xed" in data and _SURROGATE_BYTES.search(data) is not None)
        or b"NaN" in data
        or b"Infinity" in data
        or _long_exponent(data)
    )


def _long_exponent(data: bytes) -> bool:
    zeros = data.translate(_DIGITS_AS_ZERO)
    return b"e000" in zeros or b"e+000" in zeros


class _NonFinite:
    """What Python's parser would have made a NaN or an infinity (JSON has neither)."""


_NON_FINITE = _NonFinite()


def _non_finite(_: str) -> _NonFinite:
    return _NON_FINITE


def _finite_or_marked(text: str) -> float | _NonFinite:
    number = float(text)
    return number if math.isfinite(number) else _NON_FINITE


def _deep_suspect(data: bytes) -> bool:
    return data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH


def _too_deep(data: bytes) -> str | None:
    """Where the document nests too deep: the pointer to the innermost object member on the way down
    (``/variables/q`` for GraphQL variables, ``/grantors`` for a field; "" for nested arrays alone)."""
    if not _deep_suspect(data):
        return None
    frames: list[list[Any]] = []  # per open container: [is_object, current key or index]
    for token in _TOKEN.finditer(data):
        first = token.group()[0]
        if first in _OPEN:
            frames.append([True, ""] if first == ord("{") else [False, 0])
            if len(frames) > MAX_JSON_DEPTH:
                return _deep_pointer(frames)
        elif first == ord(","):
            if frames and not frames[-1][0]:
                frames[-1][1] += 1
        elif first != ord('"'):
            if frames:
                frames.pop()
        elif frames and frames[-1][0] and token.group(1):
            frames[-1][1] = _decoded_key(token.group()[: token.start(1) - token.start()])
    return None


def _deep_pointer(frames: list[list[Any]]) -> str:
    last_object = max((i for i, (is_object, _) in enumerate(frames) if is_object), default=-1)
    return "".join(f"/{_escape(str(key))}" for _, key in frames[: last_object + 1])


def _decoded_key(quoted: bytes) -> str:
    try:
        return _printable(json.loads(quoted))
    except ValueError:
        return quoted.decode("utf-8", "replace").strip('"')


def _bad_values(document: Any, prefix: str) -> list[FieldError]:
    errors: list[FieldError] = []
    queue: deque[tuple[str, Any]] = deque([(prefix, document)])
    while queue and len(errors) < _MAX_ERRORS:
        pointer, value = queue.popleft()
        if isinstance(value, str):
            errors.extend(_string_errors(pointer, value))
        elif value is _NON_FINITE:
            errors.append(FieldError(pointer, _NON_FINITE_MESSAGE, "non-finite-number"))
        elif isinstance(value, dict):
            for key, item in value.items():
                child = _join(pointer, "/" + _escape(_printable(key)))
                errors.extend(_string_errors(child, key))
                queue.append((child, item))
        elif isinstance(value, list):
            queue.extend((_join(pointer, f"/{i}"), item) for i, item in enumerate(value))
    return errors


def _string_errors(pointer: str, value: str) -> list[FieldError]:
    bad = _BAD_CHAR.search(value)
    if bad is None:
        return []
    if "\x00" in value:
        return [_nul(pointer)]
    return [FieldError(pointer, _SURROGATE_MESSAGE, "unpaired-surrogate")]


def _printable(text: str) -> str:
    """``text`` with NUL and surrogates written as ``\\uXXXX``: a pointer must itself be sendable as JSON."""
    return _BAD_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _join(prefix: str, pointer: str) -> str:
    """A parameter's name and a pointer into the JSON it holds: ``variables`` + ``/q`` → ``variables/q``."""
    return prefix + pointer if not prefix or pointer else prefix
