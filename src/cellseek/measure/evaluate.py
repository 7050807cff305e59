"""Measured accuracy: stratified k-fold on one labelled set, transfer to another, ablations.

Macro accuracy is the mean of per-class recall. Every figure in ``docs/benchmarks.md`` comes from
:func:`evaluate` (``cellseek evaluate``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cellseek.config import Config
from cellseek.search.vote import adaptive_k, vote_matrix
from cellseek.search.weighting import (
    entropy_weights,
    fuse,
    l2_normalise,
    per_query_model_weights,
    uniform_weights,
)
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """Embeddings of a labelled cell set.

    Parameters
    ----------
    name : str
        Where it came from (CSV or store path).
    embeddings : dict
        Model -> ``(N, d)`` float32.
    labels : list of str
        N class labels.
    sources : list of str
        N source names (device / dataset).
    """

    name: str
    embeddings: dict[str, np.ndarray]
    labels: list[str]
    sources: list[str] = field(default_factory=list)

    def subset(self, rows: np.ndarray) -> EvalSet:
        """The rows given, as a new set."""
        return EvalSet(
            self.name,
            {m: e[rows] for m, e in self.embeddings.items()},
            [self.labels[i] for i in rows],
            [self.sources[i] for i in rows] if self.sources else [],
        )


def macro_accuracy(truth: Sequence[str], predicted: Sequence[str | None]) -> tuple[float, dict]:
    """Mean of per-class recall over the classes present in ``truth``.

    Returns
    -------
    macro : float
    per_class : dict
        Class -> recall.
    """
    truth = np.asarray(truth, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    per_class = {}
    for c in sorted(set(truth.tolist())):
        sel = truth == c
        per_class[c] = float(np.mean(predicted[sel] == c))
    return float(np.mean(list(per_class.values()))) if per_class else 0.0, per_class


def knn_predict(
    reference: EvalSet,
    query: EvalSet,
    *,
    weighting: str = "global_entropy",
    config: Config | None = None,
    models: Sequence[str] | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Predict query labels by the adaptive kNN vote over the reference set.

    Parameters
    ----------
    reference, query : EvalSet
    weighting : {"uniform", "global_entropy", "per_query_entropy"}
    config : Config, optional
        Weighting and suggestion settings.
    models : sequence of str, optional
        Models to use (default: all of the reference's).

    Returns
    -------
    predicted : list of str
        The best label of every query (the vote never abstains here).
    weights : dict
        Global model weights used.
    """
    shares, classes, weights = vote_shares(reference, query, weighting=weighting,
                                           config=config, models=models)
    return [classes[i] for i in shares.argmax(axis=1)], weights


def vote_shares(
    reference: EvalSet,
    query: EvalSet,
    *,
    weighting: str = "global_entropy",
    config: Config | None = None,
    models: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """The adaptive kNN vote of every query: class shares, the class order and the weights.

    See :func:`knn_predict` for the parameters; ``shares`` is ``(Q, C)``.
    """
    config = config or Config()
    models = list(models or reference.embeddings)
    classes = sorted(set(reference.labels))
    code_of = {c: i for i, c in enumerate(classes)}
    ref_codes = np.array([code_of[c] for c in reference.labels])
    counts = {c: int((ref_codes == i).sum()) for i, c in enumerate(classes)}
    k = adaptive_k(counts, config.suggest)
    ref_embs = {m: reference.embeddings[m] for m in models}
    if weighting == "uniform" or len(models) == 1:
        weights = uniform_weights(models)
    elif weighting in ("global_entropy", "per_query_entropy"):
        wc = config.weighting
        weights = entropy_weights(ref_embs, reference.labels, k=wc.k, tau=wc.tau)
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    if weighting == "per_query_entropy" and len(models) > 1:
        shares = _per_query_shares(ref_embs, ref_codes, query, models, k, len(classes), config)
    else:
        ref = fuse(ref_embs, weights, models)
        qry = fuse({m: query.embeddings[m] for m in models}, weights, models)
        sims, rows = _search(ref, qry, k)
        shares = vote_matrix(sims, ref_codes[rows], len(classes), config.suggest.temperature)
    return shares, classes, weights


def _search(ref: np.ndarray, qry: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from cellseek.search.index import CellIndex

    index = CellIndex(ref.shape[1])
    index.add(ref, np.arange(len(ref)))
    return index.search(qry, k)


def _per_query_shares(ref_embs, ref_codes, query, models, k, n_classes, config) -> np.ndarray:
    per_model_shares, per_model_codes = {}, {}
    for m in models:
        sims, rows = _search(l2_normalise(ref_embs[m]), l2_normalise(query.embeddings[m]), k)
        codes = ref_codes[rows]
        per_model_codes[m] = codes
        per_model_shares[m] = vote_matrix(sims, codes, n_classes, config.suggest.temperature)
    w = per_query_model_weights(per_model_codes, n_classes, tau=config.weighting.tau)
    return sum(w[m][:, None] * per_model_shares[m] for m in models)


def stratified_folds(labels: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """Fold index of every item, each class spread evenly over the folds."""
    labels = np.asarray(labels, dtype=object)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    for c in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        fold[rows] = np.arange(len(rows)) % folds
    return fold


def cross_validate(
    data: EvalSet,
    *,
    folds: int = 5,
    weighting: str = "global_entropy",
    config: Config | None = None,
    models: Sequence[str] | None = None,
    seed: int = 0,
) -> dict:
    """Stratified k-fold macro accuracy of the kNN vote on one labelled set."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    fold = stratified_folds(data.labels, folds, seed)
    predicted: list = [None] * len(data.labels)
    weights_per_fold = []
    for f in range(folds):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        pred, w = knn_predict(data.subset(train), data.subset(test), weighting=weighting,
                              config=config, models=models)
        for i, p in zip(test, pred):
            predicted[i] = p
        weights_per_fold.append(w)
    macro, per_class = macro_accuracy(data.labels, predicted)
    mean_w = {m: float(np.mean([w[m] for w in weights_per_fold])) for m in weights_per_fold[0]}
    return {"macro_accuracy": macro, "per_class_recall": per_class, "weights": mean_w,
            "n": len(data.labels), "folds": folds}


ALIGNMENTS = ("none", "center", "center_scale", "coral", "balanced")


def align_sets(reference: EvalSet, query: EvalSet, method: str) -> tuple[EvalSet, EvalSet]:
    """Remove the source-specific offset of every model's embedding (transductive).

    ``balanced`` centres the reference on the mean of its class means and the query on the mean
    of the class means of its *predicted* classes (:func:`cellseek.search.align.balanced_center`);
    the others fit :class:`cellseek.search.align.SourceAligner` with one source per set. Query
    labels are never used.
    """
    from cellseek.search.align import SourceAligner, balanced_center

    if method == "none":
        return reference, query
    if method not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {method!r}; choose from {ALIGNMENTS}")
    ref_e, qry_e = {}, {}
    for m in reference.embeddings:
        r, q = reference.embeddings[m], query.embeddings[m]
        if method == "balanced":
            ref_e[m], qry_e[m] = balanced_center(r, reference.labels, q)
        else:
            both = np.concatenate([r, q])
            src = np.array(["reference"] * len(r) + ["query"] * len(q))
            out = SourceAligner(method).fit_transform(both, src)
            ref_e[m], qry_e[m] = out[: len(r)], out[len(r) :]
    return (EvalSet(reference.name, ref_e, reference.labels, reference.sources),
            EvalSet(query.name, qry_e, query.labels, query.sources))


def transfer(
    reference: EvalSet,
    query: EvalSet,
    *,
    weighting: str = "global_entropy",
    config: Config | None = None,
    models: Sequence[str] | None = None,
    align: str = "none",
) -> dict:
    """Macro accuracy on a query set from another source; only shared classes count.

    ``align`` removes source offsets first (see :func:`align_sets`).
    """
    shared = sorted(set(reference.labels) & set(query.labels))
    if not shared:
        raise ValueError(f"{reference.name} and {query.name} share no class")
    ref = reference.subset(np.flatnonzero(np.isin(reference.labels, shared)))
    qry = query.subset(np.flatnonzero(np.isin(query.labels, shared)))
    ref, qry = align_sets(ref, qry, align)
    pred, w = knn_predict(ref, qry, weighting=weighting, config=config, models=models)
    macro, per_class = macro_accuracy(qry.labels, pred)
    return {"macro_accuracy": macro, "per_class_recall": per_class, "weights": w,
            "classes": shared, "n_reference": len(ref.labels), "n_query": len(qry.labels),
            "align": align}


def ablations(
    reference: EvalSet,
    query: EvalSet | None = None,
    *,
    folds: int = 5,
    config: Config | None = None,
) -> list[dict]:
    """Every weighting with all models, and every model alone.

    Returns
    -------
    list of dict
        One row per variant: ``variant``, ``macro_accuracy``, ``weights``.
    """
    models = list(reference.embeddings)
    variants: list[tuple[str, str, list[str]]] = []
    if len(models) > 1:
        variants += [(f"all models, {w}", w, models) for w in
                     ("uniform", "global_entropy", "per_query_entropy")]
    variants += [(f"{m} alone", "uniform", [m]) for m in models]
    rows = []
    for name, weighting, ms in variants:
        if query is None:
            res = cross_validate(reference, folds=folds, weighting=weighting, config=config,
                                 models=ms)
        else:
            res = transfer(reference, query, weighting=weighting, config=config, models=ms)
        rows.append({"variant": name, **res})
    if query is not None:
        for method in ALIGNMENTS:
            res = transfer(reference, query, config=config, align=method)
            rows.append({"variant": f"all models, source alignment {method}", **res})
    return rows


# ---------------------------------------------------------------------------- embedding sets
#: Modules whose source is part of the embedding cache key: the central-cell segmenter and the
#: classical features (foundation models are identified by their spec and weights).
_CROP_CODE = ("cellseek.segment.classical", "cellseek.segment.stain", "cellseek.reference",
              "cellseek.segment.label_free", "cellseek.segment.modality",
              "cellseek.crops", "cellseek.zoo.classical", "cellseek.zoo.classical_features",
              "cellseek.zoo.classical_shape", "cellseek.zoo.classical_stained",
              "cellseek.zoo.classical_labelfree", "cellseek.zoo.classical_texture")

def _cache_key(csv_path: Path, models: Sequence[str], config: Config) -> str:
    h = hashlib.sha256()
    h.update(csv_path.read_bytes())
    from cellseek.zoo import get_spec

    specs = [repr(get_spec(m)) for m in models]
    h.update(json.dumps([specs, repr(config.crop), repr(config.embed.weights_dir)]).encode())
    from cellseek import __version__

    h.update(__version__.encode())
    for module in _CROP_CODE:  # a change to the segmenter or the features invalidates the cache
        h.update(Path(importlib.import_module(module).__file__).read_bytes())
    from cellseek.zoo.classical import SCALING_FILE

    if SCALING_FILE.is_file():  # so does a recalibrated scaling of the classical features
        h.update(SCALING_FILE.read_bytes())
    return h.hexdigest()[:24]


def embed_labelled_csv(
    csv_path, models: Sequence[str], config: Config | None = None, *, cache_dir=None
) -> Work[EvalSet]:
    """Embed every single-cell image of a labelled CSV (``path,label[,source]``).

    The cell of each image is the segmented object nearest its centre
    (:func:`cellseek.reference.single_cell_crops`). Results are cached in ``cache_dir``
    (default ``~/.cache/cellseek/eval``) keyed by the CSV content, the models and the crop
    settings.
    """
    from cellseek.config import default_cache_dir
    from cellseek.io.labelled_set import load_labelled_set
    from cellseek.reference import single_cell_crops
    from cellseek.zoo import load_embedder
    from cellseek.zoo.embed import embed_all

    config = config or Config()
    csv_path = Path(csv_path)
    lset = load_labelled_set(csv_path)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "eval"
    cache = cache_dir / f"{csv_path.stem}-{_cache_key(csv_path, models, config)}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            embs = {m: f[f"emb_{m}"] for m in models}
        logger.info("embeddings of %s read from cache %s", csv_path, cache)
        return EvalSet(str(csv_path), embs, list(lset.labels), list(lset.sources))
    crops, masks, _ = yield from single_cell_crops(lset.paths, config.crop)
    embedders = {m: load_embedder(m, weights_dir=config.embed.weights_dir,
                                  device=config.embed.device) for m in models}
    embs = yield from embed_all(embedders, crops, masks, batch_size=config.embed.batch_size)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"emb_{m}": e for m, e in embs.items()})
        tmp.replace(cache)
    except OSError as err:
        logger.warning("could not cache embeddings in %s: %s", cache_dir, err)
    return EvalSet(str(csv_path), embs, list(lset.labels), list(lset.sources))


def embed_store(path, models: Sequence[str] | None = None) -> EvalSet:
    """The confirmed cells of a reference store as an :class:`EvalSet`."""
    from cellseek.store import ReferenceStore
    from cellseek.zoo import MODELS, model_versions

    with ReferenceStore.open(path, readonly=True) as store:
        from cellseek.store.reference_store import check_versions

        check_versions(store, model_versions(m for m in store.models if m in MODELS))
        ids, labels = store.labelled()
        models = list(models or store.models)
        embs = {m: store.embeddings(m, ids) for m in models}
        cells = {c["id"]: c for c in store.cells(labelled=True)}
        images = {im["id"]: im for im in store.images()}
        sources = [images[cells[int(i)]["image_id"]].get("source", "") for i in ids]
    return EvalSet(str(path), embs, list(labels), sources)


def load_eval_set(path, models: Sequence[str], config: Config | None = None) -> Work[EvalSet]:
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
    weighting: str = "global_entropy",
    config: Config | None = None,
    run_ablations: bool = True,
    align: str = "balanced",
) -> Work[dict]:
    """The whole ``cellseek evaluate`` measurement.

    Returns
    -------
    dict
        ``macro_accuracy``, ``per_class_recall``, ``weights``, ``mode`` ("cross-validation" or
        "transfer"), ``ablations`` (list of rows), and the settings used.
    """
    config = config or Config()
    ref = yield from load_eval_set(reference, models, config)
    qry = (yield from load_eval_set(query, models, config)) if query else None
    yield Progress(0, 1, "evaluate")
    if qry is None:
        result = cross_validate(ref, folds=folds, weighting=weighting, config=config)
        result["mode"] = "cross-validation"
    else:
        result = transfer(ref, qry, weighting=weighting, config=config, align=align)
        result["mode"] = "transfer"
    result.update(reference=str(reference), query=str(query) if query else None,
                  models=list(models), weighting=weighting, suggest=asdict(config.suggest))
    if run_ablations:
        result["ablations"] = ablations(ref, qry, folds=folds, config=config)
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
    if result.get("ablations"):
        lines.append("ablations:")
        lines += [f"  {row['variant']:<40} {100 * row['macro_accuracy']:5.1f} %"
                  for row in result["ablations"]]
    return "\n".join(lines)
