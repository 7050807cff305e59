"""Writer hook: a Labels layer -> label image (TIFF) plus a cells table (CSV)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cellseek.text import spreadsheet_row


def _cells_rows(data: np.ndarray, features, lead_axes: str = "TZ") -> list[dict]:
    """One row per cell of a (..., Y, X) label array, with the layer's class columns.

    ``lead_axes`` names the leading axes (``"TZ"``, ``"T"``, ``"Z"``), as the cellseek cells
    layer records them; without it one leading axis is time, two are time and z.
    """
    from cellseek.crops import cells_from_labels

    data = np.asarray(data)
    lead = data.shape[:-2]
    by_value: dict[int, dict] = {}
    if features is not None and not hasattr(features, "iterrows"):
        import pandas as pd

        features = pd.DataFrame(features)
    if features is not None and len(features) and "index" in features:
        cols = [c for c in features.columns if c != "index"]
        for _, row in features.iterrows():
            by_value[int(row["index"])] = {c: row[c] for c in cols}
    rows = []
    names = lead_axes if len(lead_axes) == len(lead) else "TZ"[: len(lead)]
    for idx in np.ndindex(*lead) if lead else [()]:
        where = dict(zip(names, idx))
        t, z = where.get("T", 0), where.get("Z", 0)
        for cell in cells_from_labels(data[idx], t=int(t), z=int(z)):
            extra = by_value.get(cell.label, {})
            rows.append({
                "label_value": cell.label, "t": cell.t, "z": cell.z,
                "centroid_row": round(cell.centroid[0], 2),
                "centroid_col": round(cell.centroid[1], 2),
                "area": cell.area, **{k: v for k, v in extra.items() if k != "label_value"},
            })
    return rows


def cells_table_path(target: Path) -> Path:
    """The CSV beside a label TIFF: ``<name>_cells.csv``, or ``<name>.csv`` when the name
    already ends in "cells" (the cellseek layer "A1 cells" saves as ``A1_cells.tif`` and
    ``A1_cells.csv``, not ``A1_cells_cells.csv``)."""
    stem = target.stem
    if stem.lower().replace(" ", "_").endswith("_cells") or stem.lower() == "cells":
        return target.with_suffix(".csv")
    return target.with_name(stem + "_cells.csv")


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Save a Labels layer as a label TIFF and a cells table beside it
    (:func:`cells_table_path`).

    Parameters
    ----------
    path : str
        Target ``.tif``/``.tiff`` file.
    data : array-like
        The layer's label array.
    meta : dict
        The layer's state; its ``features`` (class, state, confidence per label value, as the
        cellseek cells layer has them) become extra CSV columns.

    Returns
    -------
    list of str
        The files written.
    """
    from cellseek.io import write_labels as _write

    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_suffix(".tif")
    written = _write(target, np.asarray(data))
    info = (meta.get("metadata") or {}).get("cellseek") or {}
    lead_axes = str(info.get("layer_axes", "")).replace("Y", "").replace("X", "")
    rows = _cells_rows(np.asarray(data), meta.get("features"), lead_axes or "TZ")
    table = cells_table_path(target)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)  # class names (and column names) as text, never formulas
        writer.writerow(spreadsheet_row(fields or ["label_value"]))
        writer.writerows(spreadsheet_row(row.get(k) for k in fields) for row in rows)
    return [str(written), str(table)]
