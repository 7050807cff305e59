"""Measured accuracy: stratified k-fold on one labelled set, transfer to another, ablations.

Macro accuracy is the mean of per-class recall. Every figure in ``docs/benchmarks.md`` comes from
:func:`evaluate` (``cellseek evaluate``), which embeds through :class:`cellseek.pipeline.Pipeline`
and suggests through :func:`cellseek.search.suggester.predict`: the pipeline and the suggester a
session uses.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from cellseek.config import Config
from cellseek.errors import CellseekError
from cellseek.measure.scoring import (
    check_folds,
    distinct_sources,
    eval_set,
    knn_predict,
    macro_accuracy,
    predict_set,
    shared_classes,
    stratified_folds,
    vote_shares,
    with_modes,
)
from cellseek.search.align import ALIGN_METHODS
from cellseek.search.cellset import CellSet
from cellseek.search.weighting import WEIGHTING_MODES
from cellseek.text import cells_text
from cellseek.types import Progress, Work

__all__ = ["ALIGNMENTS", "ablations", "cross_validate", "distinct_sources", "embed_labelled_csv",
           "embed_store", "eval_set", "evaluate", "format_table", "knn_predict", "load_eval_set",
           "macro_accuracy", "predict_set", "shared_classes", "stratified_folds", "transfer",
           "vote_shares", "with_modes"]

logger = logging.getLogger(__name__)


def cross_validate(
    data: CellSet,
    *,
    folds: int = 5,
    config: Config | None = None,
    models: Sequence[str] | None = None,
    seed: int = 0,
) -> dict:
    """Stratified k-fold macro accuracy of the suggester on one labelled set.

    Each fold's held-out cells are suggested from the other folds exactly as a session suggests
    unlabelled cells (same weighting, alignment, index and vote; :func:`knn_predict`).
    """
    config = config or Config()
    if folds < 2:
        raise CellseekError(f"--folds must be at least 2, got {folds}")
    counts = {c: data.labels.count(c) for c in set(data.labels)}
    if len(counts) < 2:
        raise CellseekError(f"{data.name}: cross-validation needs at least two classes, "
                            f"found {sorted(counts)}")
    check_folds(data.labels, folds, data.name)
    fold = stratified_folds(data.labels, folds, seed)
    predicted: list = [None] * len(data.labels)
    confidence = np.zeros(len(data.labels))
    predictors: list = [None] * len(data.labels)
    weights_per_fold = []
    for f in range(folds):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        result = predict_set(data.subset(train), data.subset(test), config=config,
                             models=models)
        for i, p, c, how in zip(test, result.votes.best(), result.votes.confidence,
                                result.votes.predictors):
            predicted[i], confidence[i], predictors[i] = p, c, how
        weights_per_fold.append(result.suggester.weights)
    macro, per_class = macro_accuracy(data.labels, predicted)
    mean_w = {m: float(np.mean([w[m] for w in weights_per_fold])) for m in weights_per_fold[0]}
    return {"macro_accuracy": macro, "per_class_recall": per_class, "weights": mean_w,
            "n": len(data.labels), "folds": folds, "align": config.align.method,
            "weighting": config.weighting.mode,
            **_confidence_report(data.labels, predicted, confidence, predictors, config)}


def _confidence_report(truth, predicted, confidence, predictors, config: Config) -> dict:
    """Coverage / precision above the threshold, reliability bins, predictors used."""
    from cellseek.measure.calibration import coverage_precision, reliability

    used = {p: predictors.count(p) for p in dict.fromkeys(predictors)}
    return {"above_threshold": coverage_precision(truth, predicted, confidence,
                                                  config.suggest.threshold),
            "reliability": reliability(truth, predicted, confidence),
            "predictors": used}


#: Source alignments compared by the ablations (:data:`cellseek.search.align.ALIGN_METHODS`).
ALIGNMENTS = ALIGN_METHODS


def transfer(
    reference: CellSet,
    query: CellSet,
    *,
    config: Config | None = None,
    models: Sequence[str] | None = None,
) -> dict:
    """Macro accuracy on a query set from another source; only shared classes count.

    Both sets must share at least two classes (with one, every suggestion would be that class).

    The query cells are suggested as a session suggests the cells of a new device: its source
    alignment (``config.align``) is fitted on the query cells' own suggestions, never on their
    labels. Each set keeps its own source names; a set without any gets one (its name).
    """
    config = config or Config()
    ref, qry, shared = shared_classes(reference, query, minimum=2)
    ref, qry = distinct_sources(ref, qry)
    result = predict_set(ref, qry, config=config, models=models)
    pred = result.votes.best()
    macro, per_class = macro_accuracy(qry.labels, pred)
    return {"macro_accuracy": macro, "per_class_recall": per_class,
            "weights": result.suggester.weights, "classes": shared,
            "n_reference": len(ref.labels), "n_query": len(qry.labels),
            "align": config.align.method, "weighting": config.weighting.mode,
            **_confidence_report(qry.labels, pred, result.votes.confidence,
                                 result.votes.predictors, config)}


def ablations(
    reference: CellSet,
    query: CellSet | None = None,
    *,
    folds: int = 5,
    config: Config | None = None,
) -> list[dict]:
    """Every weighting with all models, every model alone, the learned heads off, one search
    profile for every source (:mod:`cellseek.search.profiles`), and (transfer) every alignment.

    Returns
    -------
    list of dict
        One row per variant: ``variant``, ``macro_accuracy``, ``weights``.
    """
    config = config or Config()
    models = list(reference.embeddings)
    variants: list[tuple[str, Config, list[str]]] = []
    if len(models) > 1:
        variants += [(f"all models, {w}", with_modes(config, weighting=w), models)
                     for w in WEIGHTING_MODES]
    variants += [(f"{m} alone", with_modes(config, weighting="uniform"), [m]) for m in models]
    if len(models) > 1:
        learn = config.learn
        variants += [
            ("all models, kNN vote only (no learned head)",
             replace(config, learn=replace(learn, head="off")), models),
            ("all models for every source (no robust profile)",
             replace(config, learn=replace(learn, robust_models=())), models),
        ]
    if query is not None:
        variants += [(f"all models, source alignment {a}", with_modes(config, align=a), models)
                     for a in ALIGNMENTS]
    rows = []
    for name, cfg, ms in variants:
        if query is None:
            res = cross_validate(reference, folds=folds, config=cfg, models=ms)
        else:
            res = transfer(reference, query, config=cfg, models=ms)
        rows.append({"variant": name, **res})
    return rows


# ---------------------------------------------------------------------------- embedding sets
#: Modules whose source is part of the embedding cache key: the pipeline, the central-cell
#: segmenter and the classical features; foundation models add their spec and their factory's
#: module.
_CROP_CODE = ("cellseek.pipeline", "cellseek.crops", "cellseek.io.planes",
              "cellseek.segment.classical", "cellseek.segment.stain",
              "cellseek.segment.label_free", "cellseek.segment.modality", "cellseek.zoo.classical",
              "cellseek.zoo.classical_features", "cellseek.zoo.classical_shape",
              "cellseek.zoo.classical_stained", "cellseek.zoo.classical_labelfree",
              "cellseek.zoo.classical_texture", "cellseek.zoo.normalise")


def _cache_key(csv_path: Path, models: Sequence[str], config: Config) -> str:
    from cellseek import __version__
    from cellseek.zoo import get_spec

    h = hashlib.sha256()
    h.update(csv_path.read_bytes())
    specs = [get_spec(m) for m in models]
    h.update(json.dumps([[repr(s) for s in specs], repr(config.crop),
                         repr(config.embed.weights_dir)]).encode())
    h.update(__version__.encode())
    # the code that builds and runs each foundation model (its layer, pooling, preprocessing)
    factories = sorted({s.factory.split(":")[0] for s in specs if getattr(s, "factory", "")})
    for module in (*_CROP_CODE, *factories, "cellseek.zoo._torch_utils"):
        # a change to the segmenter, the features or a model's code invalidates the cache;
        # the source is found, not imported (a model's module need not load to be hashed)
        source = Path(importlib.util.find_spec(module).origin)
        h.update(source.read_bytes())
        for data in sorted(source.parent.glob(f"{source.stem}_*.json")):  # e.g. the scaling table
            h.update(data.read_bytes())
    from cellseek.zoo.classical import SCALING_FILE

    if SCALING_FILE.is_file():  # so does a recalibrated scaling of the classical features
        h.update(SCALING_FILE.read_bytes())
    return h.hexdigest()[:24]


def embed_labelled_csv(
    csv_path, models: Sequence[str], config: Config | None = None, *, cache_dir=None
) -> Work[CellSet]:
    """Embed every single-cell image of a labelled CSV (``path,label[,source]``).

    Through the pipeline users run (:meth:`cellseek.pipeline.Pipeline.single_cells`, as
    ``cellseek reference`` does). Results are cached in ``cache_dir`` (default
    ``~/.cache/cellseek/eval``) keyed by the CSV content, the models, the crop settings and the
    source of the pipeline's modules.
    """
    from cellseek.config import default_cache_dir
    from cellseek.io.labelled_set import load_labelled_set
    from cellseek.pipeline import Pipeline

    config = config or Config()
    csv_path = Path(csv_path)
    lset = load_labelled_set(csv_path)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "eval"
    cache = cache_dir / f"{csv_path.stem}-{_cache_key(csv_path, models, config)}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            embs = {m: f[f"emb_{m}"] for m in models}
        logger.info("embeddings of %s read from cache %s", csv_path, cache)
        return eval_set(str(csv_path), embs, list(lset.labels), list(lset.sources))
    planes = yield from Pipeline(config, models).single_cells(list(lset.paths))
    embs = {m: np.concatenate([p.embeddings[m] for p in planes]) for m in models}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"emb_{m}": e for m, e in embs.items()})
        tmp.replace(cache)
    except OSError as err:
        logger.warning("could not cache embeddings in %s: %s", cache_dir, err)
    return eval_set(str(csv_path), embs, list(lset.labels), list(lset.sources))


def embed_store(path, models: Sequence[str] | None = None) -> CellSet:
    """The confirmed cells of a reference store, with their store ids and sources."""
    from cellseek.session import Session

    with Session.open(path, readonly=True) as session:
        cells = session.reference_set()
        if models:
            cells = cells.select_models(models)
    if not len(cells):
        raise CellseekError(f"{path}: the reference set has no confirmed cells to evaluate")
    return cells


def load_eval_set(path, models: Sequence[str], config: Config | None = None) -> Work[CellSet]:
    """A labelled set from a CSV or a reference store file."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return (yield from embed_labelled_csv(path, models, config))
    return embed_store(path, models)


def evaluate(
    reference,
    query=None,
    *,
    models: Sequence[str],
    folds: int = 5,
    config: Config | None = None,
    run_ablations: bool = True,
    peers: bool = True,
) -> Work[dict]:
    """The whole ``cellseek evaluate`` measurement, through the suggester sessions use.

    Weighting, source alignment, index and vote come from ``config`` (its defaults are the
    session's).

    Returns
    -------
    dict
        ``macro_accuracy``, ``per_class_recall``, ``weights``, ``mode`` ("cross-validation" or
        "transfer"), ``above_threshold`` (coverage, precision), ``reliability``,
        ``predictors``, ``ablations`` (list of rows), ``peers`` (cellseek, a random forest and
        a logistic regression at 5, 20 and all labels per class; :mod:`cellseek.measure.peers`)
        and the settings used.
    """
    config = config or Config()
    ref = yield from load_eval_set(reference, models, config)
    qry = (yield from load_eval_set(query, models, config)) if query else None
    yield Progress(0, 1, "evaluate")
    if qry is None:
        result = cross_validate(ref, folds=folds, config=config)
        result["mode"] = "cross-validation"
    else:
        result = transfer(ref, qry, config=config)
        result["mode"] = "transfer"
    result.update(reference=str(reference), query=str(query) if query else None,
                  models=list(models), suggest=asdict(config.suggest))
    if run_ablations:
        result["ablations"] = ablations(ref, qry, folds=folds, config=config)
    if peers:
        from cellseek.measure.peers import compare

        result["peers"] = yield from compare(ref, qry, folds=folds, config=config)
    yield Progress(1, 1, "evaluate", "done")
    return result


def format_table(result: Mapping) -> str:
    """A plain-text table of an :func:`evaluate` result."""
    lines = [
        f"{result['mode']}: {result['reference']}"
        + (f" -> {result['query']}" if result.get("query") else f" ({result.get('folds')} folds)"),
        f"models: {', '.join(result['models'])}   weighting: {result['weighting']}"
        + (f"   source alignment: {result['align']}" if result.get("align") else ""),
        f"macro accuracy: {100 * result['macro_accuracy']:.1f} %",
        "per-class recall:",
    ]
    lines += [f"  {c:<14} {100 * r:5.1f} %" for c, r in result["per_class_recall"].items()]
    weights = ", ".join(f"{m}={w:.3f}" for m, w in result["weights"].items())
    lines.append(f"model weights: {weights}")
    above = result.get("above_threshold")
    if above:
        lines.append(f"confidence >= {above['threshold']:.2f}: coverage "
                     f"{100 * above['coverage']:.1f} % of cells, precision "
                     f"{100 * above['precision']:.1f} %")
    if result.get("predictors"):
        lines.append("predictor used: " + ", ".join(f"{k} for {cells_text(v)}"
                                                    for k, v in result["predictors"].items()))
    if result.get("peers"):
        from cellseek.measure.peers import format_peers

        lines.append("the same features, labels and folds, by label budget:")
        lines += ["  " + line for line in format_peers(result["peers"]).splitlines()]
    if result.get("ablations"):
        lines.append("ablations:")
        lines += [f"  {row['variant']:<40} {100 * row['macro_accuracy']:5.1f} %"
                  for row in result["ablations"]]
    return "\n".join(lines)
