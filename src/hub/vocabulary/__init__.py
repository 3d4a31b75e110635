"""Load the shared vocabulary: the packaged data files plus any extra directories a region adds.

Packaged files live at ``data/<name>/<version>.yaml`` (or ``.json``); a published file never changes and
its checksum is recorded in ``published.json``. Extra directories (``HUB_VOCABULARY_DIRS``) may hold
files anywhere below them, with any file name: each file declares its own name and version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hub.domain.vocabulary import (
    InvalidVocabulary,
    LoadedDocument,
    Vocabulary,
    checksum_of,
    parse_document,
)

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
LOCK_FILE = PACKAGE_DIR / "published.json"
EXAMPLES_DIR = PACKAGE_DIR / "examples"
SUFFIXES = (".yaml", ".yml", ".json")

__all__ = [
    "DATA_DIR",
    "EXAMPLES_DIR",
    "LOCK_FILE",
    "load_documents",
    "load_vocabulary",
    "read_file",
    "read_lock",
    "unpublished_changes",
]


def read_file(path: Path) -> dict[str, Any]:
    """Parse one YAML (``yaml.safe_load``) or JSON file into a mapping; fail naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
        content = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InvalidVocabulary(f"{path}: cannot be read: {exc}", field="/") from exc
    if not isinstance(content, dict):
        raise InvalidVocabulary(f"{path}: the file must hold one mapping (name, version, kind, …)", field="/")
    return content


def _files(directory: Path) -> Iterator[Path]:
    if not directory.is_dir():
        raise InvalidVocabulary(f"{directory}: vocabulary directory does not exist", field="vocabulary_dirs")
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in SUFFIXES and not path.name.startswith((".", "_")):
            yield path


def _load(path: Path, *, packaged: bool) -> LoadedDocument:
    content = read_file(path)
    document = parse_document(content, source=str(path))
    if packaged and (path.parent.name, path.stem) != (document.name, document.version):
        raise InvalidVocabulary(
            f"{path}: a packaged file lives at data/<name>/<version>{path.suffix}; this one declares "
            f"{document.name} {document.version}",
            field="/name",
        )
    return LoadedDocument(document=document, checksum=checksum_of(content), source=str(path))


def load_documents(extra_dirs: Sequence[Path | str] = ()) -> list[LoadedDocument]:
    """Every packaged document followed by every document found in ``extra_dirs``."""
    documents = [_load(p, packaged=True) for p in _files(DATA_DIR)]
    for directory in extra_dirs:
        documents += [_load(p, packaged=False) for p in _files(Path(directory))]
    return documents


def load_vocabulary(extra_dirs: Sequence[Path | str] = ()) -> Vocabulary:
    """Load, validate and index the vocabulary. Raises :class:`InvalidVocabulary` naming file and field.

    A file in an extra directory may add a new vocabulary or version (typically a region's wheel
    variant); republishing an existing (name, version) with different content is an error.
    """
    return Vocabulary(load_documents(extra_dirs))


def read_lock(path: Path = LOCK_FILE) -> dict[str, dict[str, str]]:
    """The committed record of published versions: name → version → checksum."""
    lock: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return lock


def unpublished_changes(
    documents: Sequence[LoadedDocument], lock: Mapping[str, Mapping[str, str]]
) -> tuple[list[str], list[str]]:
    """``(changed, new)``: packaged versions whose checksum differs from the lock, and versions not in it."""
    changed: list[str] = []
    new: list[str] = []
    for d in documents:
        recorded = lock.get(d.document.name, {}).get(d.document.version)
        label = f"{d.document.name} {d.document.version} ({d.source})"
        if recorded is None:
            new.append(label)
        elif recorded != d.checksum:
            changed.append(label)
    return changed, new
