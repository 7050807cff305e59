"""``cellseek demo``: the whole loop on the bundled sample data, offline.

1. Create a reference store with the configured models (``offline``: the classical embedder, which
   needs no weights).
2. Add 30 labelled single-cell crops (PBC, 5 white-blood-cell classes) as reference cells.
3. Segment, crop and embed six whole smear fields (BCCD).
4. Suggest a label for every cell found, export the store, the cells table and the label images.
5. Write ``overview.png``: each field with its cells outlined in the colour of their suggestion.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cellseek.config import Config

logger = logging.getLogger(__name__)

CLASS_COLOURS = {
    "basophil": "#8e44ad", "eosinophil": "#e67e22", "lymphocyte": "#2980b9",
    "monocyte": "#16a085", "neutrophil": "#c0392b", "erythroblast": "#7f8c8d",
    "ig": "#d4ac0d", "platelet": "#34495e",
}
UNCERTAIN_COLOUR = "#f1c40f"


def class_colour(label: str | None) -> str:
    """Display colour of a class (a fixed palette, then a hash-based colour)."""
    if label is None:
        return UNCERTAIN_COLOUR
    if label in CLASS_COLOURS:
        return CLASS_COLOURS[label]
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return matplotlib.colors.to_hex(cmap(sum(map(ord, label)) % 20))


def write_overview(session, image_paths: dict[int, Path], out: Path) -> Path:
    """A PNG with every field and its cells outlined by suggested (or confirmed) label."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from scipy.ndimage import binary_dilation
    from skimage.segmentation import find_boundaries

    from cellseek.io import iter_planes, read_image

    n = len(image_paths)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    seen: set = set()
    for ax, (image_id, path) in zip(axes.ravel(), image_paths.items()):
        _, _, plane = next(iter_planes(read_image(path)))
        rgb = np.asarray(plane)
        labels = session.plane_labels(image_id)[(0, 0)]
        ax.imshow(rgb)
        for cell in session.store.cells(image_id):
            label = cell["label"] or cell["suggestion"]
            seen.add(label)
            edge = binary_dilation(find_boundaries(labels == cell["label_value"], mode="outer"),
                                   iterations=1)
            overlay = np.zeros((*edge.shape, 4))
            overlay[edge] = matplotlib.colors.to_rgba(class_colour(label))
            ax.imshow(overlay)
            r, c = cell["centroid"]
            conf = cell["confidence"]
            text = f"{label or '?'}" + (f" {conf:.0%}" if conf is not None else "")
            ax.text(c, r, text, color="white", fontsize=7, ha="center",
                    bbox={"facecolor": class_colour(label), "alpha": 0.7, "pad": 1,
                          "edgecolor": "none"})
        ax.set_title(Path(path).name, fontsize=9)
        ax.axis("off")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [Patch(color=class_colour(lab), label=lab or "uncertain")
               for lab in sorted(seen, key=lambda x: (x is None, x or ""))]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8)
    fig.suptitle("cellseek demo: suggested labels (offline classical embedder)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def run_demo(output="cellseek-demo", *, config: Config | None = None, quiet=False) -> dict:
    """Run the demo; returns a summary dict (also printed)."""
    from cellseek.cli.progress import run_with_progress
    from cellseek.data import sample_field_types, sample_fields, sample_reference_csv
    from cellseek.reference import add_labelled_csv
    from cellseek.session import Session

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
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
        overview = write_overview(session, image_paths, out / "overview.png")
        types = sample_field_types()
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
    print(f"reference store: {summary['store']} ({summary['reference_cells']} labelled cells, "
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

