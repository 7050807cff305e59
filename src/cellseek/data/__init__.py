"""Paths of the bundled sample data (see ``README.md`` in this folder for sources and licences)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent


def sample_fields() -> list[Path]:
    """The six bundled BCCD blood-smear fields (640x480 RGB JPEG), sorted by name."""
    return sorted((DATA_DIR / "fields").glob("*.jpg"))


def sample_field_types() -> dict[str, str]:
    """File name -> white-blood-cell type of each bundled field."""
    lines = (DATA_DIR / "fields" / "types.csv").read_text().splitlines()[1:]
    return dict(line.split(",") for line in lines if line)


def sample_reference_csv() -> Path:
    """CSV (``path,label,source``) of the 30 bundled labelled single-cell crops."""
    return DATA_DIR / "reference" / "labels.csv"
