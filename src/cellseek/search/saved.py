"""A fitted suggester as a JSON header plus plain typed arrays, and back (with checks).

What is saved is everything :meth:`cellseek.search.suggester.Suggester.fit` computed: the model
weights, the per-source alignment offsets, the per-model PCA, the index (as plain arrays:
:mod:`cellseek.search.faiss_arrays`), the per-source predictor choice, the learned head, the
familiarity and the head's training sample. Loading never deserialises objects: the header is
JSON, every array is checked for dtype, shape and finiteness, and sizes are bounded, because a
saved state travels inside a reference set from another lab.

The header carries a *key*: everything the state depends on apart from the confirmed cells
(format version, models and their dims and spec versions, the weighting, alignment, index and
learning settings). A state whose key differs is never used. The confirmed cells it was built
from are saved as (cell id, label) arrays, so a reader can bring the state up to date with the
labels changed since (see :func:`label_changes`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np

from cellseek.config import Config
from cellseek.search import faiss_arrays
from cellseek.search.align import Alignment
from cellseek.search.choice import Choice, candidates
from cellseek.search.familiarity import Familiarity
from cellseek.search.head import HEADS, LinearHead
from cellseek.search.index import KINDS, CellIndex
from cellseek.search.profiles import split_candidate
from cellseek.search.reduce import PCA, ModelReducer
from cellseek.search.suggester import Suggester, TrainSample

FORMAT = "cellseek-search-state"
#: 3: search profiles (the weights of each, heads and familiarity per profile).
VERSION = 3
#: Alignments whose fitted state can be saved (the others are refitted on open).
SAVABLE_ALIGNMENTS = ("none", "balanced", "center")


class SavedStateError(ValueError):
    """A saved suggester state is malformed, damaged or for other settings."""


def state_key(config: Config, models: Sequence[str], dims: Mapping[str, int],
              versions: Mapping[str, str] | None = None) -> str:
    """What a saved state depends on besides the confirmed cells, as a short digest."""
    doc = {"format": FORMAT, "version": VERSION, "models": list(models),
           "dims": {m: int(dims[m]) for m in models},
           "versions": {m: str((versions or {}).get(m, "")) for m in models},
           "weighting": asdict(config.weighting), "align": asdict(config.align),
           "index": asdict(config.index), "learn": asdict(config.learn)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def can_save(suggester: Suggester) -> bool:
    """Whether the suggester's state can be saved (fitted, with a savable alignment)."""
    return suggester.index is not None and suggester.alignment.method in SAVABLE_ALIGNMENTS


def dump(suggester: Suggester, key: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and the arrays of a fitted suggester.

    Raises
    ------
    ValueError
        The suggester is not fitted or its alignment cannot be saved.
    """
    if not can_save(suggester):
        raise ValueError("only a fitted suggester with alignment none, balanced or center "
                         "can be saved")
    s = suggester
    sample = s.train_sample
    classes = sorted(set(s.labels.values()) | set(sample.labels if sample else []))
    code = {c: i for i, c in enumerate(classes)}
    sources = sorted(set(s.alignment.offsets) | set(sample.sources if sample else []))
    src_code = {src: i for i, src in enumerate(sources)}
    arrays: dict[str, np.ndarray] = {}
    for name, a in s.index.to_arrays().items():
        arrays[f"index/{name}"] = a
    ids = np.fromiter(s.labels.keys(), np.int64, len(s.labels))
    arrays["labels/ids"] = ids
    arrays["labels/codes"] = np.array([code[s.labels[int(i)]] for i in ids], np.int32)
    off_sources = sorted(s.alignment.offsets)
    for m in s.models if off_sources else ():  # no source offsets (no cells yet): no arrays
        arrays[f"offsets/{m}"] = np.stack([s.alignment.offsets[src][m] for src in off_sources])
    if s.reducer is not None:
        for m, p in s.reducer.pcas.items():
            arrays[f"pca/{m}/mean"] = p.mean.astype(np.float32)
            arrays[f"pca/{m}/components"] = p.components.astype(np.float32)
            arrays[f"pca/{m}/explained_variance"] = p.explained_variance.astype(np.float32)
    for head_name, head in s.heads.items():
        for name in ("mean", "scale", "coef", "intercept"):
            arrays[f"head/{head_name}/{name}"] = getattr(head, name).astype(np.float32)
    if s.train_sample is not None:
        arrays["train/ids"] = s.train_sample.ids.astype(np.int64)
        arrays["train/x"] = s.train_sample.x.astype(np.float16)
        arrays["train/labels"] = np.array([code[c] for c in s.train_sample.labels], np.int32)
        arrays["train/sources"] = np.array([src_code[c] for c in s.train_sample.sources], np.int32)
    header = {
        "format": FORMAT, "version": VERSION, "key": key, "models": list(s.models),
        "weights": {m: float(w) for m, w in s.weights.items()},
        "classes": classes, "sources": sources, "offset_sources": off_sources,
        "align": s.alignment.method, "index_kind": s.index.kind,
        "pca": {m: {"total_variance": float(p.total_variance), "whiten": bool(p.whiten),
                    "normalise": bool(p.normalise)} for m, p in s.reducer.pcas.items()}
        if s.reducer is not None else None,
        "profiles": {p: {m: float(w) for m, w in ws.items()} for p, ws in s.profiles.items()},
        "block_sizes": dict(s.block_sizes),
        "heads": {name: list(head.classes) for name, head in s.heads.items()},
        "head_stale": bool(s.head_stale),
        "choice": {"per_source": s.choice.per_source, "default": s.choice.default,
                   "scores": s.choice.scores},
        "familiarity": {p: {"low": f.low, "spread": f.spread, "default_low": f.default_low,
                            "default_spread": f.default_spread}
                        for p, f in s.familiarities.items()},
    }
    return header, arrays


def _floats(arrays, name, shape, dtype=np.float32) -> np.ndarray:
    a = faiss_arrays.array(arrays, name, dtype, shape=shape)
    if not np.isfinite(a).all():
        raise SavedStateError(f"saved array {name!r} holds NaN or infinite values")
    return a.astype(np.float32)


def _strings(values, what: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SavedStateError(f"saved {what} are not a list of names")
    return values


def load(header: dict, arrays: Mapping[str, np.ndarray], config: Config, key: str,
         dims: Mapping[str, int]) -> Suggester:
    """A suggester from :func:`dump` output, every part checked.

    Parameters
    ----------
    header, arrays
        As saved.
    config : Config
        The settings in force (the key must match them).
    key : str
        :func:`state_key` of these settings.
    dims : mapping
        Model -> embedding size of the store.

    Raises
    ------
    SavedStateError
        Another key, or anything malformed.
    """
    try:
        return _load(header, dict(arrays), config, key, dims)
    except SavedStateError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise SavedStateError(f"the saved search index is malformed: {err}") from None


def _load(header, arrays, config, key, dims) -> Suggester:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SavedStateError("not a cellseek search index")
    if header.get("version") != VERSION:
        raise SavedStateError(f"search index format {header.get('version')} (this cellseek "
                              f"reads {VERSION})")
    if header.get("key") != key:
        raise SavedStateError("the search index was built with other models or settings")
    models = _strings(header["models"], "models")
    if set(models) != set(dims):
        raise SavedStateError("the search index holds other models than the store")
    classes = _strings(header["classes"], "classes")
    sources = _strings(header["sources"], "sources")
    s = Suggester(config, models)
    weights = header["weights"]
    if set(weights) != set(models) or not all(np.isfinite(float(w)) and float(w) >= 0
                                              for w in weights.values()):
        raise SavedStateError("the saved model weights are malformed")
    s.weights = {m: float(weights[m]) for m in models}
    # alignment
    method = header["align"]
    if method not in SAVABLE_ALIGNMENTS or method != config.align.method:
        raise SavedStateError(f"saved alignment {method!r} does not match the settings")
    off_sources = _strings(header["offset_sources"], "sources")
    s.alignment = Alignment(method)
    if method != "none" and off_sources:  # (an index saved before cells had no offsets)
        per_model = {m: _floats(arrays, f"offsets/{m}", (len(off_sources), dims[m]))
                     for m in models}
        s.alignment.offsets = {src: {m: per_model[m][i] for m in models}
                               for i, src in enumerate(off_sources)}
    # PCA
    space = {m: int(dims[m]) for m in models}
    if header.get("pca") is not None:
        pcas = {}
        for m, scal in header["pca"].items():
            if m not in dims:
                raise SavedStateError(f"a saved PCA names the unknown model {m!r}")
            comps = faiss_arrays.array(arrays, f"pca/{m}/components", np.float32, ndim=2)
            if comps.shape[1] != dims[m] or not 1 <= comps.shape[0] <= dims[m]:
                raise SavedStateError(f"the saved PCA of {m!r} has the wrong shape")
            pcas[m] = PCA(mean=_floats(arrays, f"pca/{m}/mean", (dims[m],)),
                          components=_floats(arrays, f"pca/{m}/components", comps.shape),
                          explained_variance=_floats(arrays, f"pca/{m}/explained_variance",
                                                     (comps.shape[0],)),
                          total_variance=float(scal["total_variance"]),
                          whiten=bool(scal["whiten"]), normalise=bool(scal["normalise"]))
            space[m] = comps.shape[0]
        s.reducer = ModelReducer(pcas)
    dim = sum(space.values())
    # index
    kind = header["index_kind"]
    if kind not in KINDS:
        raise SavedStateError(f"unknown index kind {kind!r}")
    index_arrays = {k[len("index/"):]: v for k, v in arrays.items() if k.startswith("index/")}
    s.index = CellIndex.from_arrays(index_arrays, kind, config.index)
    if s.index.dim != dim:
        raise SavedStateError(f"the saved index has {s.index.dim} dims, the models give {dim}")
    ids = faiss_arrays.array(arrays, "labels/ids", np.int64, ndim=1)
    codes = faiss_arrays.array(arrays, "labels/codes", np.int32, shape=ids.shape)
    if codes.size and (codes.min() < 0 or codes.max() >= len(classes)):
        raise SavedStateError("a saved label is outside the class list")
    sorted_ids = np.sort(ids)
    if np.any(np.diff(sorted_ids) == 0) or not np.array_equal(sorted_ids,
                                                               np.sort(s.index.ids())):
        raise SavedStateError("the saved labels do not match the cells of the saved index")
    s.labels = dict(zip(ids.tolist(), (classes[c] for c in codes.tolist())))
    # search profiles: the same as these weights and settings give
    sizes = header["block_sizes"]
    if {m: int(sizes.get(m, -1)) for m in models} != space:
        raise SavedStateError("the saved block sizes do not match the models")
    s.set_profiles(space)
    saved_profiles = {str(p): {str(m): float(w) for m, w in ws.items()}
                      for p, ws in header["profiles"].items()}
    if saved_profiles != s.profiles:
        raise SavedStateError("the saved search profiles do not match the model weights")
    # learned parts
    choice = header["choice"]
    allowed = set(candidates(list(s.profiles)))
    per_source = {str(k): str(v) for k, v in choice["per_source"].items()}
    if not set(per_source.values()) | {choice["default"]} <= allowed:
        raise SavedStateError("the saved predictor choice is malformed")
    s.choice = Choice(per_source, str(choice["default"]),
                      {str(k): {str(c): float(v) for c, v in d.items()}
                       for k, d in choice["scores"].items()})
    for key, head_classes in (header.get("heads") or {}).items():
        kind, profile = split_candidate(str(key))
        if kind not in HEADS or profile not in s.profiles:
            raise SavedStateError(f"unknown saved head {key!r}")
        head_classes = _strings(head_classes, "head classes")
        rows = 1 if len(head_classes) == 2 else len(head_classes)
        s.heads[key] = LinearHead(head_classes, _floats(arrays, f"head/{key}/mean", (dim,)),
                                  _floats(arrays, f"head/{key}/scale", (dim,)),
                                  _floats(arrays, f"head/{key}/coef", (rows, dim)),
                                  _floats(arrays, f"head/{key}/intercept", (rows,)), kind)
    for profile, fam in (header.get("familiarity") or {}).items():
        if profile not in s.profiles:
            raise SavedStateError(f"a saved familiarity names the unknown profile {profile!r}")
        s.familiarities[str(profile)] = Familiarity(
            {str(k): float(v) for k, v in fam["low"].items()},
            {str(k): float(v) for k, v in fam["spread"].items()},
            float(fam["default_low"]), float(fam["default_spread"]))
    if "train/ids" in arrays:
        tids = faiss_arrays.array(arrays, "train/ids", np.int64, ndim=1)
        n = len(tids)
        x = _floats(arrays, "train/x", (n, dim), np.float16)
        tl = faiss_arrays.array(arrays, "train/labels", np.int32, shape=(n,))
        ts = faiss_arrays.array(arrays, "train/sources", np.int32, shape=(n,))
        if n and (tl.min() < 0 or tl.max() >= len(classes) or ts.min() < 0
                  or ts.max() >= len(sources)):
            raise SavedStateError("the saved training sample refers to unknown classes")
        s.train_sample = TrainSample(tids, x, [classes[i] for i in tl], [sources[i] for i in ts])
    s.head_stale = bool(header.get("head_stale")) or not s.choice.heads_needed <= set(s.heads)
    return s


def label_changes(suggester: Suggester, labelled: Mapping[int, str]) -> tuple[list, list, list]:
    """What changed between the labels a state was built from and the store's labels now.

    Returns
    -------
    added, removed, relabelled : list of int
        Cell ids confirmed since, no longer confirmed, and confirmed with another label.
    """
    saved = suggester.labels
    added = [c for c in labelled if c not in saved]
    removed = [c for c in saved if c not in labelled]
    relabelled = [c for c in labelled if c in saved and saved[c] != labelled[c]]
    return added, removed, relabelled
