"""Measure click-to-segment with a real SAM model (default LiteMedSAM) on the shared data.

``bccd``: every white cell of ``bccd/wbc_masks`` (the hand-made masks, thresholded, one cell per
connected component of at least 500 px), one click at the mask's centroid through
:meth:`cellseek.segment.sam.SamSegmenter.segment_point` (the product's click path: the detector's
box, its scale, the cached tile embedding). Reports the median IoU against the mask and the share
of clicks with IoU >= 0.7 (issue 20's targets: 0.85 and 90 %).

``labelfree``: single label-free cells (every ``--every``-th image of the 293A / HT1080 set and of
the Jurkat tiles) pasted in the middle of a canvas three times their size filled with the median
of their border. No hand-made masks exist, so the click's mask is compared with the classical
:func:`cellseek.segment.classical.central_cell_mask` of the same image (agreement, not accuracy),
and the share of masks that leak outside the pasted image is reported.

Usage::

    PYTHONPATH=src python scripts/eval_sam_clicks.py bccd [--every 1] [--model litemedsam]
    PYTHONPATH=src python scripts/eval_sam_clicks.py labelfree [--every 10]

Embeddings are cached under ``--cache`` (default ``/tmp/cellseek_eval_sam``), so a second run
only decodes.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def wbc_cells(mask_path: Path) -> list[np.ndarray]:
    """The white cells of one BCCD mask file: filled components >= 500 px of grey > 100."""
    grey = np.asarray(Image.open(mask_path).convert("L"))
    lab, n = ndi.label(ndi.binary_fill_holes(grey > 100))
    return [lab == i for i in range(1, n + 1) if (lab == i).sum() >= 500]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def summary(ious) -> str:
    ious = np.asarray(ious, float)
    return (f"n={len(ious)} median IoU {np.median(ious):.3f}, IoU>=0.7 {np.mean(ious >= 0.7):.1%}, "
            f"mean {ious.mean():.3f}")


def eval_bccd(segmenter, data: Path, every: int = 1, worst: int = 0) -> dict:
    root = data / "bccd"
    rows = list(csv.DictReader(open(root / "wbc_masks.csv", newline="")))[::every]
    ious, times, names = [], [], []
    for row in rows:
        plane = np.asarray(Image.open(root / row["image"]).convert("RGB"))
        for cell in wbc_cells(root / row["mask"]):
            r, c = ndi.center_of_mass(cell)
            t0 = time.perf_counter()
            mask = segmenter.segment_point(plane, (r, c))
            times.append(time.perf_counter() - t0)
            ious.append(iou(mask, cell))
            names.append(Path(row["image"]).name)
    order = np.argsort(ious)[:worst]
    return {"ious": ious, "times": times, "worst": [(names[i], round(ious[i], 3)) for i in order]}


def pasted(img: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``img`` in the middle of a canvas 3x its size filled with its border's median."""
    h, w = img.shape[:2]
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    canvas = np.empty((3 * h, 3 * w) + img.shape[2:], img.dtype)
    canvas[...] = np.median(border, axis=0).astype(img.dtype)
    canvas[h : 2 * h, w : 2 * w] = img
    return canvas, (h, w)


def eval_labelfree(segmenter, data: Path, every: int = 10) -> dict:
    from cellseek.segment.classical import central_cell_mask

    out = {}
    sets = {"bf293": data / "labelfree/brightfield_293A_HT1080",
            "jurkat": data / "labelfree/jurkat_ifc_cellcycle"}
    for name, root in sets.items():
        rows = list(csv.DictReader(open(root / "labels.csv", newline="")))[::every]
        agree, leak = [], []
        for row in rows:
            img = np.asarray(Image.open(root / row["path"]))
            ref = central_cell_mask(img)
            canvas, (h, w) = pasted(img)
            mask = segmenter.segment_point(canvas, (1.5 * h, 1.5 * w))
            inside = mask[h : 2 * h, w : 2 * w]
            agree.append(iou(inside, ref))
            leak.append(mask.sum() > inside.sum() * 1.02)
        out[name] = {"agreement": agree, "leaks": float(np.mean(leak)), "n": len(rows)}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["bccd", "labelfree"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--every", type=int, default=0, help="every N-th image (bccd 1, else 10)")
    ap.add_argument("--model", default="litemedsam")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cellseek_eval_sam"))
    ap.add_argument("--worst", type=int, default=0, help="list the N worst clicks")
    args = ap.parse_args(argv)
    from cellseek.segment.sam import SamSegmenter

    segmenter = SamSegmenter(args.model, device="cpu", cache_dir=args.cache)
    if args.what == "bccd":
        res = eval_bccd(segmenter, args.data, args.every or 1, args.worst)
        print(f"BCCD white cells, one click at the mask centroid ({args.model}): "
              f"{summary(res['ious'])}; median {1000 * np.median(res['times']):.0f} ms per click "
              "(wall, embeddings cached after the first)")
        for item in res["worst"]:
            print("  ", *item)
    else:
        for name, r in eval_labelfree(segmenter, args.data, args.every or 10).items():
            print(f"{name}: {r['n']} pasted cells, agreement with central_cell_mask: "
                  f"{summary(r['agreement'])}; masks leaking outside the pasted image "
                  f"{r['leaks']:.1%}")


if __name__ == "__main__":
    main()
