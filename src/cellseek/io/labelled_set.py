"""Labelled sets of single-cell images on disk: a CSV of image paths and labels.

The CSV layout is the one of ``shared/data/*/labels.csv``: columns ``path`` and ``label``
(required) and ``source`` (optional; the device or dataset a cell comes from), paths relative to
the CSV's folder. Extra columns are ignored. The images are cropped and embedded by
:meth:`cellseek.pipeline.Pipeline.single_cells`, as every other cell.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)

#: Source name used when the CSV has no ``source`` column (or the cell is empty).
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class LabelledSet:
    """A labelled set of single-cell images.

    Parameters
    ----------
    paths : tuple of Path
        Absolute image paths.
    labels : tuple of str
        One class label per image.
    sources : tuple of str
        One source (device / dataset) name per image; :data:`DEFAULT_SOURCE` when not stated.
    csv_path : Path
        The CSV the set was read from.
    """

    paths: tuple[Path, ...]
    labels: tuple[str, ...]
    sources: tuple[str, ...]
    csv_path: Path | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted distinct labels."""
        return tuple(sorted(set(self.labels)))

    def subset(self, keep) -> LabelledSet:
        """The set restricted to the rows where ``keep`` (bool array or index array) selects."""
        idx = np.arange(len(self))[np.asarray(keep)]
        return LabelledSet(
            paths=tuple(self.paths[i] for i in idx),
            labels=tuple(self.labels[i] for i in idx),
            sources=tuple(self.sources[i] for i in idx),
            csv_path=self.csv_path,
        )


def load_labelled_set(csv_path, *, check_files: bool = True) -> LabelledSet:
    """Read a labelled set from a CSV with columns ``path,class[,source]`` (a ``label`` column,
    the name of earlier versions, is read as the class).

    Parameters
    ----------
    csv_path : str or Path
        The CSV file; relative image paths are resolved against its folder.
    check_files : bool
        Raise when an image file does not exist.

    Returns
    -------
    LabelledSet

    Raises
    ------
    CellseekError
        When the CSV is missing, lacks a required column, has an empty path or label, a label
        or source a store cannot hold (a NUL character, more than
        :attr:`~cellseek.config.Limits.max_text_bytes`), or names an image that does not
        exist. The message names the CSV and the row (1 = the header).
    """
    from cellseek.store.rules import label_problem, text_problem

    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise CellseekError(f"{csv_path}: labelled-set CSV not found")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise CellseekError(f"{csv_path}: not a UTF-8 text file (byte {err.start}); save the "
                            "CSV as UTF-8") from None
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        # the class column is "class" (the glossary's word); "label" is read as before
        name = "class" if "class" in columns else "label"
        missing = [c for c in ("path", name) if c not in columns]
        if missing:
            raise CellseekError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; the header must contain "
                f"'path' and 'class' (found: {', '.join(columns) or 'nothing'})"
            )
        paths, labels, sources = [], [], []
        for row_no, row in enumerate(reader, start=2):
            if None in row:
                raise CellseekError(
                    f"{csv_path}, row {row_no}: more fields than the header has columns; "
                    "quote paths or labels that contain a comma")
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row["path"]:
                raise CellseekError(f"{csv_path}, row {row_no}: empty 'path'")
            if not row[name]:
                raise CellseekError(f"{csv_path}, row {row_no}: empty '{name}' for {row['path']}")
            for column, value in ((name, row[name]), ("source", row.get("source") or "")):
                # the rule every store applies to what it holds (cellseek.store.rules)
                problem = (label_problem if column == name else text_problem)(value)
                if problem:
                    raise CellseekError(f"{csv_path}, row {row_no}: the {column} of "
                                        f"{row['path'][:200]} cannot be stored: {problem}")
            path = Path(row["path"]).expanduser()
            if not path.is_absolute():
                path = (csv_path.parent / path).resolve()
            if check_files and not path.is_file():
                raise CellseekError(f"{csv_path}, row {row_no}: image file not found: {path}")
            paths.append(path)
            labels.append(row[name])
            sources.append(row.get("source") or DEFAULT_SOURCE)
    if not paths:
        raise CellseekError(f"{csv_path}: no rows below the header")
    logger.info("%s: %d cells, %d classes", csv_path, len(paths), len(set(labels)))
    return LabelledSet(tuple(paths), tuple(labels), tuple(sources), csv_path)
