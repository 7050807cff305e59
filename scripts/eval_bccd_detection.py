"""Measure cell detection on the BCCD whole smear fields, classical or SAM.

Segments every field in ``<data>/bccd/images`` through :func:`cellseek.segment.segment_plane`
with ``SegmentConfig(method=..., stain="stained", target=...)`` and matches the bounding box of
every predicted object to the boxes of ``boxes.csv`` (box IoU >= 0.5, one-to-one):

* ``--target wbc`` (default): against the WBC boxes; recall, precision, mean IoU of the matches;
* ``--target cells``: against every box (RBC, WBC, platelets); recall per class and the
  precision over all boxes (BCCD does not box every red cell, so precision is a lower bound).

With either target, every white cell of ``wbc_masks`` (the hand-made masks) is also compared with
the predicted object that overlaps it most: the median mask IoU says how well the cells are
outlined, beyond their boxes.

``--method sam`` uses SAM (``--sam-model``, default LiteMedSAM, whose weights ship with cellseek):
the classical objects become box prompts (:mod:`cellseek.segment.sam_boxes`). Embeddings are
cached in ``$CELLSEEK_CACHE_DIR``.

Usage::

    PYTHONPATH=src python scripts/eval_bccd_detection.py [--data ../shared/data] [--every 1]
        [--limit N] [--method classical|sam] [--target wbc|cells] [--overlays DIR]
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from cellseek.config import SegmentConfig
from cellseek.measure.detection import match_boxes, voc_to_boxes
from cellseek.segment import segment_plane
from cellseek.types import run_work

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_boxes(bccd: Path, labels=("WBC",)) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Image file name -> ((M, 4) boxes (row_min, col_min, row_max, col_max), their labels)."""
    per: dict = defaultdict(list)
    with open(bccd / "boxes.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            name = Path(row["image"]).name
            per[name]  # every image appears, also those without such boxes
            if row["label"] in labels:
                per[name].append(([row["xmin"], row["ymin"], row["xmax"], row["ymax"]],
                                  row["label"]))
    return {k: (voc_to_boxes([b for b, _ in v]) if v else np.zeros((0, 4)), [c for _, c in v])
            for k, v in per.items()}


def load_wbc_boxes(bccd: Path) -> dict[str, np.ndarray]:
    """Image file name -> (M, 4) WBC boxes (row_min, col_min, row_max, col_max)."""
    return {k: v[0] for k, v in load_boxes(bccd).items()}


CLASSES = ("WBC", "RBC", "Platelets")


def evaluate(bccd: Path, *, every: int = 1, limit: int = 0, overlays: Path | None = None,
             method: str = "classical", target: str = "wbc", sam_model: str = "litemedsam"
             ) -> dict:
    """Run the segmenter on the BCCD fields and pool the matching counts."""
    boxes = load_boxes(bccd, ("WBC",) if target == "wbc" else CLASSES)
    config = SegmentConfig(method=method, stain="stained", target=target, sam_model=sam_model)
    names = sorted(p.name for p in (bccd / "images").glob("*.jpg"))[::every]
    if limit:
        names = names[:limit]
    n_gt = n_pred = n_match = 0
    ious, times, cpu, missed = [], [], [], []
    per_class = {c: [0, 0] for c in CLASSES}  # matched, total
    mask_ious = []
    for name in names:
        plane = np.asarray(Image.open(bccd / "images" / name).convert("RGB"))
        t0, c0 = time.perf_counter(), time.process_time()
        labels = run_work(segment_plane(plane, config))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        gt, classes = boxes.get(name, (np.zeros((0, 4)), []))
        res = match_boxes(labels, gt, iou=0.5)
        n_gt += res["n_gt"]
        n_pred += res["n_pred"]
        n_match += res["n_matched"]
        ious.extend(res["ious"].values())
        mask_ious += wbc_mask_ious(bccd, name, labels)
        matched = set(res["matches"].values())
        for j, c in enumerate(classes):
            per_class[c][0] += j in matched
            per_class[c][1] += 1
        if res["n_matched"] < res["n_gt"] or res["n_pred"] > res["n_matched"]:
            missed.append((name, res["n_gt"], res["n_pred"], res["n_matched"],
                           np.round(res["best_iou"], 2).tolist()))
        if overlays is not None:
            _save_overlay(overlays / name.replace(".jpg", ".png"), plane, labels, gt)
    return {
        "fields": len(names),
        "n_gt": n_gt,
        "n_pred": n_pred,
        "n_matched": n_match,
        "recall": n_match / max(n_gt, 1),
        "precision": n_match / max(n_pred, 1),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "wbc_mask_iou": mask_ious,
        "recall_per_class": {c: (m / t if t else float("nan"), m, t)
                             for c, (m, t) in per_class.items() if t},
        "ms_per_field": 1000 * float(np.mean(times)),
        "cpu_ms_per_field": 1000 * float(np.mean(cpu)),
        "errors": missed,
    }


def wbc_mask_ious(bccd: Path, name: str, labels: np.ndarray) -> list[float]:
    """Per hand-made white-cell mask of the field, the IoU of the object overlapping it most."""
    from scipy import ndimage as ndi

    path = bccd / "wbc_masks" / name.replace("BloodImage_", "BloodImage_Mask_").replace(
        ".jpg", ".png")
    if not path.is_file():
        return []
    grey = np.asarray(Image.open(path).convert("L"))
    lab, n = ndi.label(ndi.binary_fill_holes(grey > 100))
    out = []
    for i in range(1, n + 1):
        cell = lab == i
        if cell.sum() < 500:
            continue
        hit = np.bincount(labels[cell].ravel(), minlength=1)
        hit[0] = 0
        best = int(np.argmax(hit)) if hit.size > 1 else 0
        pred = labels == best if best else np.zeros_like(cell)
        out.append(float((pred & cell).sum() / max((pred | cell).sum(), 1)))
    return out


def _save_overlay(path: Path, plane, labels, gt) -> None:
    from skimage.segmentation import find_boundaries

    path.parent.mkdir(parents=True, exist_ok=True)
    out = plane.copy()
    out[find_boundaries(labels)] = (0, 255, 0)
    for r0, c0, r1, c1 in gt.astype(int):
        r1, c1 = min(r1, out.shape[0] - 1), min(c1, out.shape[1] - 1)
        out[r0, c0:c1] = out[r1, c0:c1] = (255, 255, 0)
        out[r0:r1, c0] = out[r0:r1, c1] = (255, 255, 0)
    Image.fromarray(out).save(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--every", type=int, default=1, help="use every N-th field")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--overlays", type=Path, default=None, help="write overlay PNGs here")
    ap.add_argument("--show-errors", action="store_true")
    ap.add_argument("--method", choices=["classical", "sam"], default="classical")
    ap.add_argument("--target", choices=["wbc", "cells"], default="wbc")
    ap.add_argument("--sam-model", default="litemedsam")
    args = ap.parse_args(argv)
    res = evaluate(args.data / "bccd", every=args.every, limit=args.limit, overlays=args.overlays,
                   method=args.method, target=args.target, sam_model=args.sam_model)
    if args.show_errors:
        for e in res["errors"]:
            print("  ", *e)
    what = "WBC" if args.target == "wbc" else "cell (target=cells)"
    m = np.asarray(res["wbc_mask_iou"])
    if m.size:
        print(f"white cells' hand-made masks ({m.size}): median IoU of the best object "
              f"{np.median(m):.3f}, IoU >= 0.7 {np.mean(m >= 0.7):.1%}")
    if args.target == "cells":
        print("recall per class: " + ", ".join(
            f"{c} {r:.3f} ({m}/{t})" for c, (r, m, t) in res["recall_per_class"].items()))
    print(
        f"BCCD {what} detection ({args.method}) on {res['fields']} fields: "
        f"recall {res['recall']:.3f} "
        f"({res['n_matched']}/{res['n_gt']}), precision {res['precision']:.3f} "
        f"({res['n_matched']}/{res['n_pred']}), mean IoU {res['mean_iou']:.3f}, "
        f"{res['ms_per_field']:.0f} ms/field wall, {res['cpu_ms_per_field']:.0f} ms CPU"
    )


if __name__ == "__main__":
    main()
