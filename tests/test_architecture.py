"""The layout's rules: no private name crosses a package boundary, and no module import circle.

Both rules are checked on every import statement of the source, also on the imports inside
functions (lazy imports still tie modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import cellseek

SRC = Path(cellseek.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}
PACKAGES = {_module_name(p) for p in SRC.rglob("__init__.py")}


def _package_of(module: str) -> str:
    return module if module in PACKAGES else module.rpartition(".")[0]


def _imports(path: Path):
    """(imported module, imported name or None, line) of every cellseek import in a file."""
    module = _module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cellseek"):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = _package_of(module).split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            if not base.startswith("cellseek"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    yield sub, None, node.lineno
                else:
                    yield base, alias.name, node.lineno


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_crosses_a_package_boundary():
    crossings = []
    for module, path in MODULES.items():
        own = _package_of(module)
        for target, name, line in _imports(path):
            parts = target.split(".")
            private_at = [i for i, part in enumerate(parts) if i and _private(part)]
            if private_at:  # a private module: it belongs to the package that holds it
                home = ".".join(parts[: private_at[0]])
            elif name is not None and _private(name):
                home = _package_of(target)
            else:
                continue
            if own != home and not own.startswith(home + "."):
                    crossings.append(f"{path.relative_to(SRC.parent)}:{line} imports "
                                     f"{target}{'.' + name if name else ''}")
    assert not crossings, "\n".join(crossings)


def test_no_module_import_circle():
    graph = {m: {t for t, _, _ in _imports(p) if t in MODULES and t != m}
             for m, p in MODULES.items()}
    circles = []
    for start in graph:
        for nxt in graph[start]:
            seen, stack = set(), [nxt]
            while stack:
                node = stack.pop()
                if node == start:
                    circles.append(f"{start} -> {nxt} -> ... -> {start}")
                    break
                if node not in seen:
                    seen.add(node)
                    stack.extend(graph.get(node, ()))
    assert not circles, "\n".join(sorted(set(circles)))
