"""meter_core stays sans-I/O: none of its modules imports an I/O or runtime package (STYLE.md section 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import meter_core

FORBIDDEN = {
    "asyncio", "socket", "selectors", "threading", "multiprocessing", "uvloop", "asyncpg",
    "prometheus_client", "click", "logging", "fleet", "time", "subprocess", "psycopg",
}


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_meter_core_imports_nothing_that_does_io():
    root = Path(meter_core.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(root)): sorted(imported_names(f) & FORBIDDEN) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}
