"""The floors hold: import-linter's layers contract (pyproject.toml) and no import hidden in a function.

ARCHITECTURE.md draws the floors; an import that points up a floor, or a cycle between floors, breaks the
contract. An import inside a function hides a loop from both, so there is none unless it is there for
start-up time and says so in a comment on its line or the line above ("start-up").
"""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("meter_core", "fleet")

importlinter_cli = pytest.importorskip("importlinter.cli", reason="import-linter comes with the test extra")


def _lint(config: Path) -> int:
    cwd = os.getcwd()
    # import-linter's CLI runs logging.config.dictConfig, which disables every logger that exists then
    # (ours among them, for the tests after this one): their state is put back afterwards.
    loggers = {name: (lg.disabled, lg.level, lg.propagate) for name, lg in logging.root.manager.loggerDict.items()
               if isinstance(lg, logging.Logger)}
    root = (logging.root.level, list(logging.root.handlers))
    os.chdir(ROOT)  # grimp finds the packages on sys.path; the tree's own come first from its root
    try:
        return importlinter_cli.lint_imports(config_filename=str(config), no_cache=True, no_logo=True)
    finally:
        os.chdir(cwd)
        for name, (disabled, level, propagate) in loggers.items():
            lg = logging.getLogger(name)
            lg.disabled, lg.level, lg.propagate = disabled, level, propagate
        logging.root.setLevel(root[0])
        logging.root.handlers[:] = root[1]


def test_the_layers_contract_is_kept():
    assert _lint(ROOT / "pyproject.toml") == 0


def test_the_contract_sees_the_imports(tmp_path):
    # The same floors upside down must break: the codec floor is imported by every floor above it.
    upside_down = tmp_path / "upside_down.ini"
    upside_down.write_text(
        "[importlinter]\nroot_packages =\n    meter_core\n\n"
        "[importlinter:contract:upside-down]\nname = upside down\ntype = layers\n"
        "layers =\n    meter_core.codec\n    meter_core.device\n")
    assert _lint(upside_down) == 1


def test_no_import_cycle_anywhere():
    # The layers contract forbids arrows between floors that point up; this forbids loops inside a floor.
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    finally:
        os.chdir(cwd)
    edges = {m: graph.find_modules_directly_imported_by(m) - {m} for m in graph.modules}
    assert not _cycles(edges), "import cycles:\n" + "\n".join(" -> ".join(c) for c in _cycles(edges))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _function_imports(path: Path):
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    said = " ".join(lines[max(0, inner.lineno - 2):inner.lineno])
                    if "start-up" not in said:
                        yield f"{path.relative_to(ROOT)}:{inner.lineno}: {ast.unparse(inner)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_hides_in_a_function(package):
    found = [hit for path in sorted((ROOT / package).rglob("*.py")) for hit in _function_imports(path)]
    assert not found, "imports inside functions (move them up, or say 'start-up' and why):\n" + "\n".join(found)
