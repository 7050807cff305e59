"""One vocabulary (issue 22, item 6): the glossary of the user guide defines the words the
cell states, the hover table and the CSV files use, and no CSV calls a class a "label"."""

from __future__ import annotations

import re
from pathlib import Path

from cellseek.batch.runner import SUGGESTION_COLUMNS
from cellseek.store.exchange import CSV_COLUMNS
from cellseek.types import CELL_STATES

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "user-guide.md"


def _glossary() -> set[str]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Words this guide", 1)[1].split("\n## ", 1)[0]
    return {w.lower() for w in re.findall(r"^\| \*\*([^*]+)\*\*", section, re.M)} | {
        w.lower() for w in re.findall(r", \*\*([^*]+)\*\*", section)}


def test_the_glossary_defines_every_state_and_column_word():
    words = _glossary()
    assert set(CELL_STATES) <= words
    for column in ("class", "state", "suggestion", "confidence", "best_guess"):
        assert column.replace("_", " ") in words, column
    assert {"reference set", "reference cell", "vote share", "familiarity", "threshold",
            "label value"} <= words


def test_no_csv_calls_a_class_a_label():
    for columns in (CSV_COLUMNS, SUGGESTION_COLUMNS):
        assert not {"label", "label_source", "best_label"} & set(columns)
        assert {c for c in columns if "label" in c} <= {"label_value", "label_image"}
    assert {"class", "class_source", "state", "best_guess"} <= set(CSV_COLUMNS)
