"""Measure the classical segmenter on the single-cell sets and the label-free fixtures.

* ``zheng``: wbc_zheng2018 (300x300, GT cell masks: nucleus 255 + cytoplasm 128) — IoU of the
  ``central_cell_mask`` with the GT cell mask (mean, median, share >= 0.5).
* ``pbc``: pbc_subset single-cell crops (no masks) — detection rate: how often the stained
  segmenter finds an object covering the image centre (or within 10 % of the side of it), plus
  ms per crop of ``central_cell_mask``.
* ``fixtures``: label-free mode on the stardist nuclei image (F1 of 1-1 matching at mask IoU
  >= 0.5 against its GT), the QPI cell and the LIVECell phase field (object counts; overlays with
  ``--overlays``), with the detected modality.
* ``montage``: the two Jurkat imaging-flow brightfield montages (one cell per 40 x 40 tile):
  share of the occupied tiles (std > 10, the README's rule) holding exactly one detected cell
  (by centroid), through ``segment_plane`` with ``SegmentConfig(method="classical")``.
* ``bf293``: ``central_cell_mask`` on the 200 single-cell 293A / HT1080 brightfield images (no
  ground truth: mask area and overlays with ``--overlays`` to check by eye).
* ``bf293montage``: all 200 293A / HT1080 images pasted side by side into one 20 x 10 montage
  (one cell per 224 x 224 tile) and segmented as one field through ``segment_plane``: objects per
  tile and the share of tiles with exactly one object (issue 20: 56 objects for 16 cells).

``--method`` (``classical``, ``sam``, ``auto``) picks the segmenter of ``fixtures``, ``montage``
and ``bf293montage`` (``SegmentConfig(method=...)``; SAM is LiteMedSAM unless ``--sam-model``).

Usage::

    PYTHONPATH=src python scripts/eval_segmentation_extra.py \
        [zheng|pbc|fixtures|montage|bf293|bf293montage|all] [--data ../shared/data] [--every N]
        [--overlays DIR] [--method classical|sam|auto] [--sam-model litemedsam]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cellseek.config import SegmentConfig
from cellseek.segment import segment_plane
from cellseek.segment.classical import central_cell_mask
from cellseek.segment.classical import segment as classical_segment
from cellseek.segment.modality import detect_modality
from cellseek.types import run_work

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def eval_zheng(data: Path, every: int = 1, overlays: Path | None = None) -> dict:
    root = data / "wbc_zheng2018"
    rows = list(csv.DictReader(open(root / "labels.csv", newline="")))[::every]
    ious, times = [], []
    for row in rows:
        img = np.asarray(Image.open(root / row["path"]).convert("RGB"))
        gt = np.asarray(Image.open(root / row["mask_path"]))
        gt = (gt[..., 0] if gt.ndim == 3 else gt) >= 128
        t0 = time.perf_counter()
        mask = central_cell_mask(img)
        times.append(time.perf_counter() - t0)
        ious.append(_iou(mask, gt))
        if overlays is not None:
            _overlay(overlays / f"zheng_{Path(row['path']).stem}.png", img, mask, gt)
    ious = np.array(ious)
    return {"n": len(ious), "mean_iou": ious.mean(), "median_iou": float(np.median(ious)),
            "iou>=0.5": float((ious >= 0.5).mean()), "ms": 1000 * float(np.mean(times))}


def eval_pbc(data: Path, every: int = 1, overlays: Path | None = None) -> dict:
    root = data / "pbc_subset"
    rows = list(csv.DictReader(open(root / "labels.csv", newline="")))[::every]
    found, near, times = [], [], []
    per_class: dict[str, list[bool]] = {}
    for row in rows:
        img = np.asarray(Image.open(root / row["path"]).convert("RGB"))
        t0 = time.perf_counter()
        mask = central_cell_mask(img)
        times.append(time.perf_counter() - t0)
        labels = classical_segment(img, stain="stained", target="auto",
                         min_area=max(30, int(0.002 * img.shape[0] * img.shape[1])))
        h, w = labels.shape
        cy, cx = h // 2, w // 2
        hit = bool(labels[cy, cx] > 0)
        r = int(0.1 * min(h, w))
        hit_near = bool((labels[cy - r:cy + r, cx - r:cx + r] > 0).any())
        found.append(hit)
        near.append(hit_near)
        per_class.setdefault(row["label"], []).append(hit_near)
        if overlays is not None and len(found) % 10 == 0:
            _overlay(overlays / f"pbc_{Path(row['path']).stem}.png", img, mask, None)
    return {"n": len(found), "centre_covered": float(np.mean(found)),
            "within_10pct": float(np.mean(near)),
            "per_class": {k: round(float(np.mean(v)), 3) for k, v in sorted(per_class.items())},
            "ms_central_cell_mask": 1000 * float(np.mean(times))}


def _match_f1(labels, gt, thr=0.5):
    from scipy.optimize import linear_sum_assignment

    p_ids = np.unique(labels)[1:]
    g_ids = np.unique(gt)[1:]
    # intersection matrix via a joint histogram
    joint = np.zeros((labels.max() + 1, gt.max() + 1), np.int64)
    np.add.at(joint, (labels.ravel(), gt.ravel()), 1)
    area_p = joint.sum(1)
    area_g = joint.sum(0)
    inter = joint[np.ix_(p_ids, g_ids)]
    union = area_p[p_ids][:, None] + area_g[g_ids][None, :] - inter
    iou = inter / np.maximum(union, 1)
    rows, cols = linear_sum_assignment(-iou)
    tp = int((iou[rows, cols] >= thr).sum())
    return {"n_pred": len(p_ids), "n_gt": len(g_ids), "tp": tp,
            "precision": tp / max(len(p_ids), 1), "recall": tp / max(len(g_ids), 1),
            "f1": 2 * tp / max(len(p_ids) + len(g_ids), 1),
            "mean_matched_iou": float(iou[rows, cols][iou[rows, cols] >= thr].mean())
            if tp else float("nan")}


def _read_tiff(path: Path) -> np.ndarray:
    try:
        import tifffile

        return tifffile.imread(path)
    except Exception:  # noqa: BLE001 - LZW without imagecodecs: Pillow reads it
        return np.asarray(Image.open(path))


#: The segmenter settings of the label-free evaluations (``--method``, ``--sam-model``).
CONFIG = SegmentConfig(method="classical")


def segment(img, **kw):
    """``segment_plane`` with :data:`CONFIG` and the given overrides (area filter included)."""
    from dataclasses import replace

    return run_work(segment_plane(img, replace(CONFIG, **kw)))


def eval_fixtures(data: Path, overlays: Path | None = None) -> dict:
    root = data / "fixtures"
    out = {}
    img = _read_tiff(root / "stardist_dsb2018_nuclei_img2d.tif")
    gt = _read_tiff(root / "stardist_dsb2018_nuclei_mask2d.tif").astype(np.int64)
    t0 = time.perf_counter()
    labels = segment(img, stain="label-free", min_area=30)
    out["stardist"] = {**_match_f1(labels, gt), "ms": 1000 * (time.perf_counter() - t0),
                       "modality": detect_modality(img)}
    if overlays is not None:
        _overlay(overlays / "stardist.png", img, labels > 0, gt > 0, labels=labels)
    for name, file, kw in [
        ("qpi_cell", "skimage_cell_qpi.png", {}),
        ("livecell_A172", "livecell_A172_Phase_A7_1_00d00h00m_1.tif", {}),
    ]:
        path = root / file
        img = np.asarray(Image.open(path)) if file.endswith(".png") else _read_tiff(path)
        t0 = time.perf_counter()
        labels = segment(img, **kw)
        areas = np.bincount(labels.ravel())[1:]
        out[name] = {"n_objects": int(labels.max()),
                     "median_area": float(np.median(areas)) if areas.size else 0.0,
                     "foreground_fraction": float((labels > 0).mean()),
                     "ms": 1000 * (time.perf_counter() - t0), "modality": detect_modality(img)}
        if overlays is not None:
            _overlay(overlays / f"{name}.png", img, labels > 0, None, labels=labels)
    return out


def eval_montages(data: Path, overlays: Path | None = None, crop: int = 0) -> dict:
    out = {}
    for path in sorted((data / "labelfree" / "jurkat_ifc_cellcycle" / "fields").glob("*.png")):
        img = np.asarray(Image.open(path))
        if crop:  # the top-left crop x crop pixels only (a whole number of tiles)
            img = img[: crop // 40 * 40, : crop // 40 * 40]
        t0 = time.perf_counter()
        labels = segment(img)
        ms = 1000 * (time.perf_counter() - t0)
        tiles = img[: img.shape[0] // 40 * 40, : img.shape[1] // 40 * 40]
        n = img.shape[0] // 40
        occupied = tiles.reshape(n, 40, n, 40).transpose(0, 2, 1, 3).std(axis=(2, 3)) > 10
        out[path.stem] = {"modality": detect_modality(img),
                          **tile_counts(labels, 40, occupied), "ms": ms}
        if overlays is not None:
            _overlay(overlays / f"{path.stem}.png", img, labels > 0, None, labels=labels)
    return out


def tile_counts(labels: np.ndarray, tile: int, occupied: np.ndarray) -> dict:
    """Objects per ``tile`` x ``tile`` tile of a montage (by centroid), over the occupied tiles."""
    from scipy import ndimage as ndi

    rows, cols = occupied.shape
    ids = np.arange(1, labels.max() + 1)
    centres = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    count = np.zeros((rows, cols), int)
    for r, c in (centres // tile).astype(int):
        count[min(r, rows - 1), min(c, cols - 1)] += 1
    areas = np.bincount(labels.ravel())[1:]
    return {"occupied_tiles": int(occupied.sum()), "objects": int(labels.max()),
            "exactly_one": float((count[occupied] == 1).mean()),
            "none": int((count[occupied] == 0).sum()),
            "two_or_more": int((count[occupied] > 1).sum()),
            "max_per_tile": int(count.max()) if count.size else 0,
            "objects_in_empty_tiles": int(count[~occupied].sum()),
            "median_area": float(np.median(areas[areas > 0])) if (areas > 0).any() else 0.0}


def bf293_montage(data: Path, cols: int = 20, limit: int = 0) -> np.ndarray:
    """All 200 293A / HT1080 images (224 x 224) side by side, row by row in file order
    (``limit``: every ``200 // limit``-th image only, both cell lines)."""
    root = data / "labelfree" / "brightfield_293A_HT1080"
    rows = list(csv.DictReader(open(root / "labels.csv", newline="")))
    if limit:
        rows = rows[:: max(len(rows) // limit, 1)][:limit]
    imgs = [np.asarray(Image.open(root / r["path"]).convert("L")) for r in rows]
    side = imgs[0].shape[0]
    n_rows = -(-len(imgs) // cols)
    out = np.full((n_rows * side, cols * side), int(np.median(imgs[0])), np.uint8)
    for i, img in enumerate(imgs):
        r, c = divmod(i, cols)
        out[r * side : (r + 1) * side, c * side : (c + 1) * side] = img[:side, :side]
    return out


def eval_bf293_montage(data: Path, overlays: Path | None = None, limit: int = 0) -> dict:
    n = limit or 200
    cols = 20 if n >= 100 else int(np.ceil(np.sqrt(n)))
    img = bf293_montage(data, cols, limit)
    side = 224
    occupied = np.zeros((img.shape[0] // side, cols), bool)
    occupied.flat[:n] = True
    t0 = time.perf_counter()
    labels = segment(img)
    ms = 1000 * (time.perf_counter() - t0)
    if overlays is not None:
        _overlay(overlays / "bf293_montage.png", img, labels > 0, None, labels=labels)
    return {"modality": detect_modality(img), **tile_counts(labels, side, occupied), "ms": ms}


def eval_bf293(data: Path, overlays: Path | None = None) -> dict:
    root = data / "labelfree" / "brightfield_293A_HT1080"
    rows = list(csv.DictReader(open(root / "labels.csv", newline="")))
    areas, times, mods = [], [], []
    for i, row in enumerate(rows):
        img = np.asarray(Image.open(root / row["path"]))
        t0 = time.perf_counter()
        mask = central_cell_mask(img)
        times.append(time.perf_counter() - t0)
        areas.append(int(mask.sum()))
        mods.append(detect_modality(img))
        if overlays is not None and i % 10 == 0:
            _overlay(overlays / f"bf293_{Path(row['path']).stem}.png", img, mask, None)
    return {"n": len(rows), "median_area": float(np.median(areas)),
            "modalities": {m: mods.count(m) for m in sorted(set(mods))},
            "ms": 1000 * float(np.mean(times))}


def _overlay(path: Path, img, mask, gt, labels=None) -> None:
    from skimage.segmentation import find_boundaries

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(img, np.float32)
    if arr.ndim == 2:
        lo, hi = np.percentile(arr, [0.5, 99.5])
        arr = np.repeat(((arr - lo) / max(hi - lo, 1e-9)).clip(0, 1)[..., None] * 255, 3, -1)
    arr = arr.astype(np.uint8).copy()
    if gt is not None:
        arr[find_boundaries(gt)] = (255, 255, 0)
    arr[find_boundaries(labels if labels is not None else mask)] = (0, 255, 0)
    Image.fromarray(arr).save(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", default="all",
                    choices=["zheng", "pbc", "fixtures", "montage", "bf293", "bf293montage",
                             "all"])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--overlays", type=Path, default=None)
    ap.add_argument("--method", choices=["classical", "sam", "auto"], default="classical")
    ap.add_argument("--sam-model", default="litemedsam")
    ap.add_argument("--crop", type=int, default=0, help="montage: top-left crop (px) only")
    ap.add_argument("--limit", type=int, default=0, help="bf293montage: this many cells only")
    args = ap.parse_args(argv)
    global CONFIG
    CONFIG = SegmentConfig(method=args.method, sam_model=args.sam_model)
    if args.what in ("fixtures", "all"):
        for k, v in eval_fixtures(args.data, args.overlays).items():
            print("fixtures", k, {a: round(b, 3) if isinstance(b, float) else b
                                  for a, b in v.items()})
    if args.what in ("montage", "all"):
        for k, v in eval_montages(args.data, args.overlays, args.crop).items():
            print("montage", k, {a: round(b, 3) if isinstance(b, float) else b
                                 for a, b in v.items()})
    if args.what in ("bf293", "all"):
        print("bf293", eval_bf293(args.data, args.overlays))
    if args.what in ("bf293montage", "all"):
        print("bf293montage", {a: round(b, 3) if isinstance(b, float) else b
                               for a, b in eval_bf293_montage(args.data, args.overlays,
                                                              args.limit).items()})
    if args.what in ("zheng", "all"):
        print("zheng", eval_zheng(args.data, args.every, args.overlays))
    if args.what in ("pbc", "all"):
        print("pbc", eval_pbc(args.data, args.every, args.overlays))


if __name__ == "__main__":
    main()
