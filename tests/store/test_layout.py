"""The store package's seams: a tree of small modules, no import circle, no private access."""

from __future__ import annotations

import ast
from pathlib import Path

STORE = Path(__file__).resolve().parents[2] / "src" / "cellseek" / "store"


def _imports(path: Path) -> set[str]:
    """``cellseek.store.X`` modules a store module imports (at any level)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "cellseek.store":
                out.update(f"cellseek.store.{a.name}" for a in node.names)
            elif node.module.startswith("cellseek.store."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("cellseek.store."))
    return out


def test_store_modules_import_no_circle_and_nothing_imports_the_facade():
    modules = {f"cellseek.store.{p.stem}": p for p in STORE.glob("*.py") if p.stem != "__init__"}
    graph = {name: _imports(path) & set(modules) for name, path in modules.items()}
    for name, deps in graph.items():
        if name != "cellseek.store.reference_store":
            assert "cellseek.store.reference_store" not in deps, name
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import circle: " + " -> ".join(trail + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, trail + [node])
        state[node] = 2

    for name in sorted(graph):
        visit(name, [])


def test_store_modules_stay_small_and_use_no_private_store_state():
    for path in STORE.glob("*.py"):
        lines = path.read_text().splitlines()
        # the facade is ~40 public methods of one to five lines with their numpydoc docstrings
        limit = 800 if path.stem == "reference_store" else 400
        assert len(lines) < limit, f"{path.name} has {len(lines)} lines"
        if path.stem != "reference_store":
            text = "\n".join(lines)
            for private in ("._tx", "._read(", "._write(", "._change_labels", "._connection("):
                assert private not in text, f"{path.name} uses {private}"
