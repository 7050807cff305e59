"""`import cellseek` and every core module stay light: no torch, faiss, napari or Qt at import."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import cellseek

HEAVY = ("torch", "torchvision", "timm", "transformers", "open_clip", "segment_anything", "faiss")
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")
SRC = Path(cellseek.__file__).parent


def _core_modules():
    names = []
    for info in pkgutil.walk_packages([str(SRC)], prefix="cellseek."):
        if "._napari" in info.name or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return {m.split(".")[0] for m in out}


def test_import_cellseek_is_light():
    loaded = _imported_after("import cellseek")
    assert not loaded & set(HEAVY + GUI), loaded & set(HEAVY + GUI)


def test_every_core_module_imports_without_heavy_or_gui_packages():
    modules = _core_modules()
    assert len(modules) > 10
    code = "\n".join(f"import {m}" for m in modules)
    loaded = _imported_after(code)
    assert not loaded & set(HEAVY + GUI), loaded & set(HEAVY + GUI)


@pytest.mark.parametrize("path", sorted(p for p in SRC.rglob("*.py") if "_napari" not in p.parts))
def test_no_module_level_gui_or_heavy_import_in_core_source(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only; imports inside functions are allowed
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in HEAVY + GUI, f"{path.name}: imports {name} at top"


def test_ruff_is_clean_including_banned_module_level_imports():
    pytest.importorskip("ruff")
    from ruff.__main__ import find_ruff_bin

    repo = SRC.parents[1]
    out = subprocess.run([find_ruff_bin(), "check", "src", "tests", "scripts"], cwd=repo,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
