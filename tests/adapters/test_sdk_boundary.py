"""Adapters import only the SDK (hub.adapters): never the hub's services, database, API or domain."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted((ROOT / "src" / "hub" / "adapters").glob("*.py")) + sorted(
    (ROOT / "examples" / "hub-adapter-example" / "src").rglob("*.py")
)


def hub_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m == "hub" or m.startswith("hub.")]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_adapter_modules_import_only_hub_adapters(path: Path) -> None:
    outside = [m for m in hub_imports(path) if not (m == "hub.adapters" or m.startswith("hub.adapters."))]
    assert outside == [], f"{path.name} imports {outside}"
