"""docs/architecture.md has one row per module of src/cellseek, and no row for a module that is
gone: the contract of the layout stays true as the code moves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import cellseek

SRC = Path(cellseek.__file__).parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
HEADING = re.compile(r"^#{3,4} (?:`(?P<package>[\w/]+)/`|(?P<top>Top level))")
ROW = re.compile(r"^\| `(?P<name>[\w.]+\.py)` \|")


def _documented() -> dict[str, list[str]]:
    """Package folder (relative to src/cellseek, "" for the top level) -> module rows."""
    rows: dict[str, list[str]] = {}
    package = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = HEADING.match(line)
        if heading:
            package = "" if heading["top"] else heading["package"]
            rows.setdefault(package, [])
        elif line.startswith("#"):
            package = None
        elif package is not None and (row := ROW.match(line)):
            rows[package].append(row["name"])
    return rows


def _needs_row(path: Path) -> bool:
    """Every module; a package's ``__init__.py`` only when it holds more than a docstring."""
    if path.name != "__init__.py":
        return True
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def test_every_module_has_one_row_and_every_row_a_module():
    documented = _documented()
    problems = []
    folders = {p.parent for p in SRC.rglob("*.py")}
    for folder in sorted(folders):
        rel = folder.relative_to(SRC).as_posix()
        rel = "" if rel == "." else rel
        if rel.startswith("data"):
            continue
        actual = sorted(p.name for p in folder.glob("*.py") if _needs_row(p))
        rows = documented.get(rel)
        if rows is None:
            problems.append(f"no section for {rel or 'the top level'}/ (modules: {actual})")
            continue
        doubled = sorted({r for r in rows if rows.count(r) > 1})
        missing = sorted(set(actual) - set(rows))
        gone = sorted(set(rows) - {p.name for p in folder.glob("*.py")})
        for what, names in (("twice", doubled), ("without a row", missing),
                            ("documented but absent", gone)):
            if names:
                problems.append(f"{rel or 'top level'}: {what}: {', '.join(names)}")
    assert not problems, "docs/architecture.md is out of date:\n" + "\n".join(problems)
