"""Compare classical-feature variants on cached crops of the label-free and stained sets.

The crops and masks are made once per set exactly as ``cellseek evaluate`` makes them
(:meth:`cellseek.pipeline.Pipeline.single_cell_crops`, default
:class:`~cellseek.config.CropConfig`), and
the accuracy is computed with the same functions (:func:`cellseek.measure.evaluate.cross_validate`,
:func:`~cellseek.measure.evaluate.transfer` with class-balanced alignment), so a variant's figure
here equals what ``cellseek evaluate`` reports once that variant is the embedder's default.
Final figures are always re-measured through ``cellseek evaluate`` (``docs/classical.md``).

Usage::

    PYTHONPATH=src python scripts/eval_labelfree.py crops                 # cache crops (/tmp)
    PYTHONPATH=src python scripts/eval_labelfree.py eval [--groups a,b] [--sets jurkat7,...]
    PYTHONPATH=src python scripts/eval_labelfree.py calibrate             # write the scaling
    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/eval_labelfree.py speed   # crops per CPU-s
    PYTHONPATH=src python scripts/eval_labelfree.py diagnose   # after `cellseek evaluate` runs

Sets: ``jurkat7`` (Experiment 1, 7 phases), ``jurkat2`` (interphase vs mitosis), ``bf293``
(293A vs HT1080), ``pbc`` (8 classes), ``pbc>bccd`` and ``pbc>zheng`` (transfers, reference =
PBC, balanced alignment).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("eval_labelfree")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CSV = {
    "jurkat7": DATA / "labelfree/jurkat_ifc_cellcycle/labels_Experiment_1.csv",
    "jurkat2": DATA / "labelfree/jurkat_ifc_cellcycle"
    / "labels_Experiment_1_interphase_vs_mitosis.csv",
    "jurkat_exp2": DATA / "labelfree/jurkat_ifc_cellcycle/labels_Experiment_2.csv",
    "bf293": DATA / "labelfree/brightfield_293A_HT1080/labels.csv",
    "pbc": DATA / "pbc_subset/labels.csv",
    "bccd": DATA / "bccd/wbc_crops_labels.csv",
    "zheng": DATA / "wbc_zheng2018/labels.csv",
}
EVALS = ("jurkat7", "jurkat2", "bf293", "pbc", "pbc>bccd", "pbc>zheng")
#: Whole label-free fields whose segmented cells join the calibration (no labels needed).
FIELDS = {
    "livecell": DATA / "fixtures/livecell_A172_Phase_A7_1_00d00h00m_1.tif",
    "dsb2018": DATA / "fixtures/stardist_dsb2018_nuclei_img2d.tif",
}
#: Unlabelled calibration sources of the fixed scaling, per modality (each weighs the same).
CALIBRATION = {
    "pbc": ("pbc",),
    "jurkat": ("jurkat7", "jurkat_exp2"),
    "brightfield_293A_HT1080": ("bf293",),
    "livecell": ("livecell",),
    "dsb2018": ("dsb2018",),
}
CROPS_OF = {"jurkat2": "jurkat7"}  # same images, other labels


def crops(name: str, cache: Path):
    """Crops, masks, labels and sources of one set, cut as ``cellseek evaluate`` cuts them."""
    from cellseek.config import Config
    from cellseek.io.labelled_set import load_labelled_set
    from cellseek.pipeline import Pipeline
    from cellseek.types import run_work

    lset = load_labelled_set(CSV[name])
    src = CROPS_OF.get(name, name)
    out = cache / f"crops_{src}.npz"
    if not out.exists():
        t0 = time.perf_counter()
        cut = run_work(Pipeline(Config(), ()).single_cell_crops(load_labelled_set(CSV[src]).paths))
        c, m = np.concatenate([x[2] for x in cut]), np.concatenate([x[3] for x in cut])
        logger.info("%s: %d crops in %.0f s", src, len(c), time.perf_counter() - t0)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(out, crops=np.round(c * 255).astype(np.uint8), masks=m)
    with np.load(out) as z:
        c, m = z["crops"].astype(np.float32) / 255.0, z["masks"]
    return c, m, list(lset.labels), list(lset.sources)


def field_crops(name: str, cache: Path):
    """Crops and masks of the cells the classical segmenter finds in a whole field."""
    from cellseek.config import CropConfig, SegmentConfig
    from cellseek.crops import cells_from_labels, extract_crops
    from cellseek.io import iter_planes, read_image
    from cellseek.segment import segment_plane
    from cellseek.types import run_work

    out = cache / f"crops_{name}.npz"
    if not out.exists():
        _, _, plane = next(iter_planes(read_image(FIELDS[name])))
        plane = np.asarray(plane)
        labels = run_work(segment_plane(plane, SegmentConfig(method="classical")))
        c, m = extract_crops(plane, labels, cells_from_labels(labels), CropConfig())
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(out, crops=np.round(c * 255).astype(np.uint8), masks=m)
    with np.load(out) as z:
        return z["crops"].astype(np.float32) / 255.0, z["masks"]


def _code_hash() -> str:
    import cellseek.zoo.classical as a
    import cellseek.zoo.classical_features as b

    h = hashlib.sha256()
    for mod in (a, b):
        h.update(Path(mod.__file__).read_bytes())
    for p in sorted(Path(b.__file__).parent.glob("classical_*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def raw(name: str, cache: Path) -> np.ndarray:
    """Raw classical features of a set (cached per code version)."""
    from cellseek.zoo.classical import ClassicalEmbedder

    src = CROPS_OF.get(name, name)
    out = cache / f"raw_{src}_{_code_hash()}.npy"
    if out.exists():
        return np.load(out)
    c, m = field_crops(name, cache) if name in FIELDS else crops(name, cache)[:2]
    emb = ClassicalEmbedder()
    t0 = time.perf_counter()
    f = np.concatenate([emb.raw(c[s : s + 64], m[s : s + 64]) for s in range(0, len(c), 64)])
    rate = len(f) / (time.perf_counter() - t0)
    logger.info("%s: %d crops embedded, %.0f crops/s", src, len(f), rate)
    np.save(out, f)
    return f


def eval_set(name: str, cache: Path, embed_kw: dict):
    from cellseek.measure.evaluate import eval_set as make_set
    from cellseek.zoo.classical import ClassicalEmbedder

    _, _, labels, sources = crops(name, cache)
    f = ClassicalEmbedder(**embed_kw).from_raw(raw(name, cache))
    return make_set(name, {"classical": f}, labels, sources)


def run_eval(names, cache: Path, embed_kw: dict) -> dict:
    from cellseek.measure.evaluate import cross_validate, transfer, with_modes

    res = {}
    for name in names:
        if ">" in name:
            ref, qry = name.split(">")
            r = transfer(eval_set(ref, cache, embed_kw), eval_set(qry, cache, embed_kw),
                         config=with_modes(None, align="balanced"))
        else:
            r = cross_validate(eval_set(name, cache, embed_kw), folds=5)
        res[name] = r
        logger.info("%-10s %5.1f %%", name, 100 * r["macro_accuracy"])
    return res


def speed(cache: Path, n: int = 256) -> None:
    """Crops per CPU-second of the classical embedder (one thread, median of 3 runs) on stained
    crops of the bundled smear fields (those of ``cellseek bench``) and on cached label-free
    crops. Runs with any cellseek version on ``PYTHONPATH`` (to compare versions)."""
    from cellseek.measure.bench import sample_crops
    from cellseek.types import run_work
    from cellseek.zoo import load_embedder
    from cellseek.zoo.embed import embed_crops

    embedder = load_embedder("classical")
    sets = {"stained (bench sample fields)": sample_crops(n, 128)}
    for name in ("jurkat7", "bf293"):
        c, m = crops(name, cache)[:2]
        sets[name] = (c[:n], m[:n])
    for name, (c, m) in sets.items():
        run_work(embed_crops(embedder, c[:32], m[:32]))  # warm-up
        times = []
        for _ in range(3):
            t0 = time.process_time()
            run_work(embed_crops(embedder, c, m, batch_size=32))
            times.append(time.process_time() - t0)
        print(f"{name:<32} {len(c) / np.median(times):6.1f} crops per CPU-second")


def diagnose() -> None:
    """Per-class recall, plain accuracy, transfers without alignment, and what a trained
    classifier gets from the same features, on the embeddings ``cellseek evaluate`` cached.

    The classifier (scikit-learn, standardised logistic regression with balanced class weights,
    same folds) is a diagnostic of how much the features carry, not a cellseek figure.
    """
    from cellseek.measure.evaluate import (
        cross_validate,
        embed_labelled_csv,
        macro_accuracy,
        stratified_folds,
        transfer,
        with_modes,
    )
    from cellseek.types import run_work

    def load(name):
        return run_work(embed_labelled_csv(CSV[name], ["classical"]))

    for name in EVALS:
        if ">" in name:
            ref, qry = (load(n) for n in name.split(">"))
            for align in ("balanced", "none"):
                res = transfer(ref, qry, config=with_modes(None, align=align))
                print(f"{name} align={align}: macro {100 * res['macro_accuracy']:.1f}",
                      {c: round(100 * v, 1) for c, v in res["per_class_recall"].items()})
            continue
        data = load(name)
        res = cross_validate(data, folds=5)
        print(f"{name}: macro {100 * res['macro_accuracy']:.1f}",
              {c: round(100 * v, 1) for c, v in res["per_class_recall"].items()})
        try:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler
        except ImportError:
            continue
        x, y = data.embeddings["classical"], np.asarray(data.labels, object)
        fold = stratified_folds(data.labels, 5, 0)
        pred = np.empty(len(y), object)
        for f in range(5):
            clf = make_pipeline(StandardScaler(), LogisticRegression(
                max_iter=3000, C=0.1, class_weight="balanced"))
            pred[fold == f] = clf.fit(x[fold != f], y[fold != f]).predict(x[fold == f])
        print(f"{name}: logistic regression on the same features (diagnostic) "
              f"{100 * macro_accuracy(y, pred)[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["crops", "eval", "calibrate", "speed", "diagnose"])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cellseek_labelfree"))
    ap.add_argument("--sets", default=",".join(EVALS))
    ap.add_argument("--groups", default="", help="comma-separated groups (default: all)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--refit-stained", action="store_true",
                    help="calibrate: refit the stained table too (default: keep it)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.sets.split(",")
    if args.command == "crops":
        for n in {s for name in names for s in name.split(">")}:
            crops(n, args.cache)
        return
    if args.command == "diagnose":
        diagnose()
        return
    if args.command == "speed":
        speed(args.cache)
        return
    if args.command == "calibrate":
        from cellseek.zoo.classical import SCALING_FILE, calibrate

        keep = {} if args.refit_stained else {"stained": json.loads(
            SCALING_FILE.read_text())["stained"]}  # fmt: skip
        table = calibrate(
            {src: np.concatenate([raw(n, args.cache) for n in sets])
             for src, sets in CALIBRATION.items()},
            note="scripts/eval_labelfree.py calibrate: per source median and IQR/1.349 per "
            "feature; centre = median of the source medians, scale = mean of the source spreads; "
            "no labels" + ("" if args.refit_stained else "; stained table kept (version 1's)"),
            keep=keep,
        )
        print(json.dumps(table["fitted_on"]))
        return
    kw = {}
    if args.groups:
        kw["group_weights"] = {g: 1.0 for g in args.groups.split(",")}
    res = run_eval(names, args.cache, kw)
    print(" | ".join(f"{n} {100 * r['macro_accuracy']:.1f}" for n, r in res.items()))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
