"""``cellseek demo``: the whole loop on the bundled sample data, offline.

1. Create a reference store with the configured models (the default ``packaged`` preset: the
   classical embedder and the pretrained models whose weights installed with cellseek, so no
   download; ``$CELLSEEK_PRESET=light`` for the classical embedder alone).
2. Add 30 labelled single-cell crops (PBC, 5 white-blood-cell classes) as reference cells.
3. Segment, crop and embed six whole smear fields (BCCD).
4. Suggest a label for every cell found, export the store, the cells table and the label images.
5. Write ``overview.png``: each field with its segmented white blood cells outlined in the colour
   of their suggestion (the palette napari uses), beside the type an expert gave the field.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cellseek.config import Config
from cellseek.text import count_text

logger = logging.getLogger(__name__)

def write_overview(session, image_paths: dict[int, Path], out: Path,
                   known_types: dict[str, str] | None = None) -> Path:
    """A PNG of every field, each segmented cell outlined in the colour of its label.

    Colours are the classes' colours in napari and the plots (``session.class_colours()``);
    confirmed cells are drawn solid, suggestions dashed, uncertain cells grey. Each field's
    title gives the type an expert gave its white blood cell (``known_types``), so a user sees at
    a glance where the suggestion is right and where it is not.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from skimage.measure import find_contours

    from cellseek.annotation.colours import class_hex
    from cellseek.io import iter_planes, read_image

    colours = session.class_colours()
    known_types = known_types or {}
    n = len(image_paths)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows + 0.8), squeeze=False,
                             layout="constrained")
    seen: set = set()
    for ax, (image_id, path) in zip(axes.ravel(), image_paths.items()):
        _, _, plane = next(iter_planes(read_image(path)))
        labels = session.plane_labels(image_id)[(0, 0)]
        ax.imshow(np.asarray(plane))
        for cell in session.store.cells(image_id):
            label = cell["label"] or cell["suggestion"]
            seen.add(label)
            colour = class_hex(label, colours)
            style = "-" if cell["label"] else "--"
            for contour in find_contours(labels == cell["label_value"], 0.5):
                ax.plot(contour[:, 1], contour[:, 0], style, color=colour, lw=1.6)
            r0, c0, _, _ = cell["bbox"]
            conf = cell["confidence"]
            text = (label or "uncertain") + (f" {conf:.0%}" if conf is not None else "")
            ax.text(c0, max(r0 - 4, 0), text, color="white", fontsize=7, va="bottom",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
        known = known_types.get(Path(path).name)
        ax.set_title(f"{Path(path).name}\nknown white cell: {known or 'not given'}",
                     fontsize=8)
        ax.axis("off")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [Line2D([], [], color=class_hex(lab, colours), lw=2, label=lab or "uncertain")
               for lab in sorted(seen, key=lambda x: (x is None, x or ""))]
    handles.append(Line2D([], [], color="black", ls="--", lw=1.5,
                          label="dashed: suggested, solid: confirmed"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=8)
    fig.suptitle("cellseek demo: suggested labels of the segmented white blood cells "
                 "(offline classical embedder)", fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def run_demo(output="cellseek-demo", *, config: Config | None = None, quiet=False) -> dict:
    """Run the demo; returns a summary dict (also printed)."""
    from cellseek.cli.progress import run_with_progress
    from cellseek.data import sample_field_types, sample_fields, sample_reference_csv
    from cellseek.errors import CellseekError
    from cellseek.reference import add_labelled_csv
    from cellseek.session import Session

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise CellseekError(f"{out}: a file exists here; give the demo a folder (-o FOLDER)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CellseekError(f"{out}: cannot create the demo folder ({err.strerror or err})") \
            from None
    store_path = out / "reference.cellseek"
    session = Session.create(store_path, config or Config(), overwrite=True)
    try:
        n_ref = run_with_progress(add_labelled_csv(session, sample_reference_csv()), quiet=quiet)
        image_paths = {}
        for path in sample_fields():
            image_id = run_with_progress(session.add_image(path, source="BCCD"), quiet=quiet)
            image_paths[image_id] = path
        weights = session.model_weights(refresh=True)
        suggestions = run_with_progress(session.suggest(), quiet=quiet)
        exported = session.export(out / "export", overwrite=True)  # the demo owns it
        types = sample_field_types()
        overview = write_overview(session, image_paths, out / "overview.png", types)
        per_field = []
        for image_id, path in image_paths.items():
            cells = session.store.cells(image_id)
            # The field's white blood cell is its largest segmented cell.
            main = max(cells, key=lambda c: c["area"]) if cells else None
            per_field.append({
                "image": path.name, "cells": len(cells), "wbc_type": types.get(path.name),
                "suggested": main["suggestion"] if main else None,
                "best": suggestions[main["id"]].best_label if main else None,
                "confidence": main["confidence"] if main else None,
            })
        summary = {
            "store": str(store_path), "reference_cells": n_ref,
            "query_cells": len(suggestions),
            "uncertain": int(sum(s.uncertain for s in suggestions.values())),
            "models": list(session.models), "weights": weights, "fields": per_field,
            "overview": str(overview), "export": {k: str(v) for k, v in exported.items()},
        }
    finally:
        session.close()
    _print_summary(summary)
    return summary


def _print_summary(summary: dict) -> None:
    print(f"reference store: {summary['store']} "
          f"({count_text(summary['reference_cells'], 'labelled cell')}, "
          f"models: {', '.join(summary['models'])})")
    print(f"query cells: {summary['query_cells']} ({summary['uncertain']} uncertain)")
    print(f"{'field':<24}{'cells':>6}  {'known WBC type':<15}{'suggested (best)':<28}")
    for f in summary["fields"]:
        conf = f" {f['confidence']:.0%}" if f["confidence"] is not None else ""
        sugg = f"{f['suggested'] or 'uncertain'} ({f['best']}{conf})"
        print(f"{f['image']:<24}{f['cells']:>6}  {f['wbc_type'] or '-':<15}{sugg:<28}")
    hits = sum(f["best"] == f["wbc_type"] for f in summary["fields"])
    print(f"largest cell's best label matches the known WBC type in {hits}/"
          f"{len(summary['fields'])} fields (a 6-field sample, not an accuracy measurement; "
          "see `cellseek evaluate`)")
    print(f"overview: {summary['overview']}")
    print(f"exported: {', '.join(summary['export'].values())}")

