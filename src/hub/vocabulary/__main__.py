"""``python -m hub.vocabulary lock``: record new packaged versions in published.json.

Never rewrites a recorded checksum: a changed published file is an error (publish a new version).
"""

from __future__ import annotations

import json
import sys

from hub.vocabulary import LOCK_FILE, load_documents, read_lock, unpublished_changes


def main(argv: list[str]) -> int:
    if argv != ["lock"]:
        print("usage: python -m hub.vocabulary lock", file=sys.stderr)
        return 2
    documents = load_documents()
    lock = read_lock() if LOCK_FILE.exists() else {}
    changed, new = unpublished_changes(documents, lock)
    if changed:
        print(
            "published versions changed (publish a new version instead):",
            *changed,
            sep="\n  ",
            file=sys.stderr,
        )
        return 1
    for d in documents:
        lock.setdefault(d.document.name, {}).setdefault(d.document.version, d.checksum)
    ordered = {name: dict(sorted(versions.items())) for name, versions in sorted(lock.items())}
    LOCK_FILE.write_text(json.dumps(ordered, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print("recorded:", *new, sep="\n  ") if new else print("nothing new")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
