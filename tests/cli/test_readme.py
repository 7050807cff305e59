"""The README's commands run as written (on a folder of images), in a scratch folder that holds
the files they name: the bundled sample fields as ``fields/`` and its labelled crops as
``labels.csv``, ``pbc/labels.csv`` and ``other/labels.csv``."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from cellseek.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"
#: Commands too slow for the default suite (measured by their own benchmarks).
SLOW = ("bench",)


def _usage_commands() -> list[list[str]]:
    text = README.read_text()
    block = text.split("## Using it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.strip().splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            commands.append(shlex.split(command))
    return commands


def _copy_labelled(csv_from: Path, folder: Path) -> None:
    """The bundled labelled crops in ``folder``, with a CSV whose paths are relative to it."""
    shutil.copytree(csv_from.parent, folder, dirs_exist_ok=True)


@pytest.mark.default_preset
def test_the_readme_commands_work_as_written(tmp_path, monkeypatch, capsys):
    """Run as a user runs them: the default preset, with its packaged weights."""
    from cellseek.data import sample_fields, sample_reference_csv

    commands = _usage_commands()
    assert [c[:2] for c in commands][:3] == [["cellseek", "reference"], ["cellseek", "embed"],
                                            ["cellseek", "suggest"]]
    monkeypatch.chdir(tmp_path)
    _copy_labelled(sample_reference_csv(), tmp_path)
    for name in ("pbc", "other"):
        _copy_labelled(sample_reference_csv(), tmp_path / name)
    (tmp_path / "fields").mkdir()
    for path in sample_fields():
        shutil.copy(path, tmp_path / "fields" / path.name)
    for argv in commands:
        assert argv[0] == "cellseek"
        if argv[1] in SLOW:
            continue
        code = main(argv[1:] + ["-q"] if argv[1] in ("reference", "embed", "suggest", "segment",
                                                     "evaluate") else argv[1:])
        out = capsys.readouterr()
        assert code == 0, f"{' '.join(argv)} failed: {out.err[-2000:]}"
    # what the commands promised
    assert len(list((tmp_path / "labels").glob("*_labels.tif"))) == len(sample_fields())
    assert (tmp_path / "cells.csv").exists() and (tmp_path / "result.json").exists()
    assert (tmp_path / "shared" / "ref.cellseek").exists()
    from cellseek.store import ReferenceStore

    with ReferenceStore.open(tmp_path / "ref.cellseek", readonly=True) as store:
        assert len(store.images()) == 30 + len(sample_fields())  # every image of fields/
        assert store.search_state_info() is not None  # the index travels with the store


def test_the_readme_install_lines_are_the_ci_commands():
    lines = README.read_text().splitlines()[3:5]
    assert re.match(r"pip install -e \. && cellseek demo", lines[0])
    assert re.match(r'pip install -e "\.\[test\]" && pytest', lines[1])
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && pytest' in ci


@pytest.mark.parametrize("argv", [c for c in _usage_commands() if c[1] in SLOW])
def test_slow_readme_commands_parse(argv):
    from cellseek.cli.main import build_parser

    assert build_parser().parse_args(argv[1:]).func is not None
