"""Evaluate the classical embedder on real labelled data (PBC CV and cross-device transfer).

Usage::

    PYTHONPATH=src python scripts/eval_classical.py crops --mask simple     # cache crops
    PYTHONPATH=src python scripts/eval_classical.py eval --mask simple --norm none --align none
    PYTHONPATH=src python scripts/eval_classical.py grid                    # every variant

(Version 1 experiments on the stained sets; the version 2 scaling is fitted by
``scripts/eval_labelfree.py calibrate``.)

Crops and features are cached as .npy under ``--cache`` (default ``/tmp/cellseek_eval``).
Evaluations:

1. ``pbc_cv``: pbc_subset, stratified 5-fold, similarity-weighted kNN (k=10, cosine), macro
   accuracy (mean per-class recall).
2. ``pbc->zheng``: reference = PBC cells of the classes present in wbc_zheng2018, query = zheng.
3. ``pbc->bccd``: the same with bccd/wbc_crops.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from cellseek.io.labelled_set import (
    crop_around_mask,
    load_labelled_set,
    read_rgb,
    single_cell_crop,
)

logger = logging.getLogger("eval_classical")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = {
    "pbc": DATA / "pbc_subset" / "labels.csv",
    "zheng": DATA / "wbc_zheng2018" / "labels.csv",
    "bccd": DATA / "bccd" / "wbc_crops_labels.csv",
}
SIZE = 128


def cache_crops(name: str, mask: str, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (uint8), masks and labels of one dataset, cached under ``cache``."""
    out = cache / f"crops_{name}_{mask}.npz"
    if out.exists():
        z = np.load(out, allow_pickle=False)
        return z["crops"], z["masks"], z["labels"]
    ls = load_labelled_set(DATASETS[name])
    crops = np.zeros((len(ls), SIZE, SIZE, 3), np.uint8)
    masks = np.zeros((len(ls), SIZE, SIZE), bool)
    t0 = time.perf_counter()
    gt = None
    if mask == "gt":
        import csv

        with open(DATASETS[name], newline="") as fh:
            gt = [DATASETS[name].parent / r["mask_path"] for r in csv.DictReader(fh)]
    for i, p in enumerate(ls.paths):
        img = read_rgb(p)
        if gt is not None:
            m = np.asarray(read_rgb(gt[i])[..., 0]) >= 100 / 255
            c, mm = crop_around_mask(img, m, size=SIZE, margin=0.25)
        else:
            c, mm = single_cell_crop(img, size=SIZE, method=mask)
        crops[i] = np.round(c * 255).astype(np.uint8)
        masks[i] = mm
        if i % 200 == 0:
            logger.info("%s %d/%d %.1fs", name, i, len(ls), time.perf_counter() - t0)
    labels = np.array(ls.labels)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(out, crops=crops, masks=masks, labels=labels)
    return crops, masks, labels


def raw_features(name, mask, norm, cache, smooth=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Raw (unstandardised) classical features (cached) and labels of one dataset."""
    from cellseek.zoo.classical import FEATURE_DIM, ClassicalEmbedder

    out = cache / f"raw_{name}_{mask}_{norm}_s{smooth:g}_d{FEATURE_DIM}.npy"
    crops, masks, labels = cache_crops(name, mask, cache)
    if out.exists():
        return np.load(out), labels
    emb = ClassicalEmbedder(smooth=smooth, normalise=norm)
    t0 = time.perf_counter()
    parts = []
    for s in range(0, len(crops), 128):
        c = crops[s : s + 128].astype(np.float32) / 255.0
        m = masks[s : s + 128]
        parts.append(emb.raw(c, m))
    f = np.concatenate(parts)
    dt = time.perf_counter() - t0
    logger.info("%s: %d crops embedded in %.1fs (%.0f crops/s)", name, len(f), dt, len(f) / dt)
    np.save(out, f)
    return f, labels


def features(name, mask, norm, cache, feat_kw=None) -> tuple[np.ndarray, np.ndarray]:
    """Standardised, group-weighted classical embeddings and labels of one dataset."""
    from cellseek.zoo.classical import DEFAULT_SMOOTH, ClassicalEmbedder

    kw = dict(feat_kw or {})
    kw.setdefault("smooth", DEFAULT_SMOOTH)
    raw, labels = raw_features(name, mask, norm, cache, kw["smooth"])
    return ClassicalEmbedder(**kw, normalise=norm).from_raw(raw), labels


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_predict(ref, ref_y, qry, k=10):
    """Similarity-weighted cosine kNN vote (numpy brute force)."""
    ref, qry = l2n(ref), l2n(qry)
    sim = qry @ ref.T
    k = min(k, ref.shape[0])
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sim, idx, axis=1)
    classes = np.unique(ref_y)
    code = np.searchsorted(classes, ref_y)[idx]
    w = np.maximum(s, 0) + 1e-6
    votes = np.zeros((qry.shape[0], len(classes)))
    np.add.at(votes, (np.arange(qry.shape[0])[:, None], code), w)
    return classes[votes.argmax(1)]


def macro_acc(y, pred, classes=None) -> float:
    classes = np.unique(y) if classes is None else classes
    return float(np.mean([(pred[y == c] == c).mean() for c in classes if (y == c).any()]))


def stratified_folds(y, n_folds=5, seed=0):
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % n_folds
    return fold


def align(ref, qry, mode, ref_y=None):
    from cellseek.search.align import SourceAligner, balanced_center

    if mode == "none":
        return ref, qry
    if mode == "balanced":
        return balanced_center(ref, ref_y, qry)
    al = SourceAligner(method=mode)
    src = np.array(["ref"] * len(ref) + ["qry"] * len(qry))
    both = al.fit_transform(np.concatenate([ref, qry]), src)
    return both[: len(ref)], both[len(ref) :]


def run_eval(mask, norm, align_mode, cache, k=10, feat_kw=None, qmask=None) -> dict:
    fp, yp = features("pbc", mask, norm, cache, feat_kw)
    fold = stratified_folds(yp)
    pred = np.empty_like(yp)
    for f in range(5):
        tr, te = fold != f, fold == f
        r, q = fp[tr], fp[te]
        if align_mode != "none":
            r, q = align(r, q, align_mode, yp[tr])
        pred[te] = knn_predict(r, yp[tr], q, k)
    res = {"pbc_cv": macro_acc(yp, pred)}
    for name in ("zheng", "bccd"):
        fq, yq = features(name, qmask or mask, norm, cache, feat_kw)
        keep = np.isin(yp, np.unique(yq))
        r, q = align(fp[keep], fq, align_mode, yp[keep])
        pq = knn_predict(r, yp[keep], q, k)
        res[f"pbc->{name}"] = macro_acc(yq, pq)
        res[f"pbc->{name}_perclass"] = {
            c: round(float((pq[yq == c] == c).mean()), 2) for c in np.unique(yq)
        }
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["crops", "calibrate", "eval", "grid"])
    ap.add_argument("--mask", default="simple", help="simple | segment | auto | gt(zheng only)")
    ap.add_argument("--qmask", default=None, help="mask method for query sets (default --mask)")
    ap.add_argument("--norm", default="none")
    ap.add_argument("--align", default="none")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--feat", default="{}", help="JSON kwargs of ClassicalEmbedder")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cellseek_eval"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.what == "crops":
        for name in DATASETS:
            cache_crops(name, args.mask, args.cache)
        return 0
    if args.what == "calibrate":
        # version 2 of the features is calibrated per modality on stained and label-free sets
        raise SystemExit("the classical scaling is fitted by scripts/eval_labelfree.py calibrate")
    if args.what == "eval":
        res = run_eval(
            args.mask, args.norm, args.align, args.cache, args.k, json.loads(args.feat), args.qmask
        )
        print(json.dumps({"mask": args.mask, "norm": args.norm, "align": args.align, **res}))
        return 0
    for norm in ("none", "grey_world", "reinhard", "macenko"):
        for al in ("none", "center_scale", "coral"):
            res = run_eval(args.mask, norm, al, args.cache, args.k, json.loads(args.feat))
            print(json.dumps({"mask": args.mask, "norm": norm, "align": al, **res}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
