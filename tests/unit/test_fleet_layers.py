"""fleet's floors point one way (ARCHITECTURE-fleet.md): tools and the CLI above runtime, runtime above store,
and fleet's own leaf modules (settings, errors, metrics) below all three; no import cycle among fleet's
modules, and no import inside a function but the commented start-up ones of the CLI and pg."""

from __future__ import annotations

import ast
from pathlib import Path

import fleet

ROOT = Path(fleet.__file__).resolve().parent
FLOOR = {"store": 1, "runtime": 2, "tools": 3}
TOP = {"fleet.cli": 4, "fleet.__main__": 5}


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = ("fleet", *f.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(path: Path, known: dict[str, Path]) -> tuple[set[str], list[int]]:
    """(fleet modules ``path`` imports, lines of imports inside a function)."""
    tree = ast.parse(path.read_text())
    deps, nested = set(), []
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            nested += [n.lineno for n in ast.walk(func) if isinstance(n, ast.Import | ast.ImportFrom)]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fleet":
            for a in node.names:
                deps.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module)
        elif isinstance(node, ast.Import):
            deps.update(a.name for a in node.names if a.name.split(".")[0] == "fleet")
    return {d for d in deps if d in known}, nested


def _floor(module: str) -> int:
    if module in TOP:
        return TOP[module]
    parts = module.split(".")
    return FLOOR.get(parts[1], 0) if len(parts) > 2 else 0


def test_fleet_floors_point_down_and_have_no_cycle():
    known = _modules()
    graph = {m: _imports(p, known)[0] - {m} for m, p in known.items()}
    up = [f"{m} -> {d}" for m, ds in graph.items() for d in ds if _floor(d) > _floor(m)]
    assert up == []
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_imports_inside_functions_are_commented_start_up_ones():
    known = _modules()
    offenders = []
    for m, path in known.items():
        lines = path.read_text().splitlines()
        for n in _imports(path, known)[1]:
            around = " ".join(lines[n - 2:n])
            if "start-up" not in around:
                offenders.append(f"{m}:{n}")
    assert offenders == []
