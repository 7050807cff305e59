"""Tests of the hand-crafted ``classical`` embedder."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cellseek.zoo.base import Embedder
from cellseek.zoo.classical import FEATURE_DIM, SPEC, build, feature_names

SIZE = 64


def _cell(rng, *, lobes: int, nuc_r: float, cyt=(0.8, 0.7, 0.85), cell_r=22.0, size=SIZE):
    """A synthetic stained white cell: lilac cytoplasm disc, ``lobes`` purple nucleus blobs."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    c = (size - 1) / 2 + rng.normal(0, 1.0, 2)
    img = np.ones((size, size, 3), np.float32) * np.array([0.96, 0.92, 0.86], np.float32)
    r_cell = cell_r * rng.uniform(0.9, 1.1)
    mask = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r_cell**2
    img[mask] = cyt
    phase = rng.uniform(0, 2 * np.pi)
    for k in range(lobes):
        ang = phase + 2 * np.pi * k / lobes
        off = 0.0 if lobes == 1 else 0.45 * r_cell
        ly, lx = c[0] + off * np.sin(ang), c[1] + off * np.cos(ang)
        img[(yy - ly) ** 2 + (xx - lx) ** 2 < nuc_r**2] = (0.3, 0.15, 0.45)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img, 0, 1), mask


def _batch(n, seed, **kw):
    rng = np.random.default_rng(seed)
    cells = [_cell(rng, **kw) for _ in range(n)]
    return np.stack([c for c, _ in cells]), np.stack([m for _, m in cells])


@pytest.fixture(scope="module")
def embedder():
    return build(SPEC)


def test_spec_and_protocol(embedder):
    assert isinstance(embedder, Embedder)
    assert embedder.spec.name == "classical" and embedder.spec.backend == "classical"
    assert embedder.spec.dim == FEATURE_DIM == len(feature_names())
    assert embedder.spec.weights_id == "" and not embedder.spec.needs_weights
    assert embedder.spec.factory == "cellseek.zoo.classical:build"


def test_dim_dtype_and_determinism(embedder):
    crops, masks = _batch(4, 0, lobes=3, nuc_r=6)
    a = embedder.embed(crops, masks)
    b = embedder.embed(crops.copy(), masks.copy())
    assert a.shape == (4, FEATURE_DIM) and a.dtype == np.float32
    assert np.array_equal(a, b)
    # one-by-one gives the same as batched
    assert np.allclose(embedder.embed(crops[1:2], masks[1:2])[0], a[1], atol=1e-5)


def test_odd_inputs_are_finite(embedder):
    n = 5
    crops = np.zeros((n, SIZE, SIZE, 3), np.float32)
    masks = np.zeros((n, SIZE, SIZE), bool)
    crops[1] = 1.0  # all white
    masks[2, 30, 30] = True  # one-pixel mask
    crops[3] = np.random.default_rng(0).random((SIZE, SIZE, 1))  # grey (label-free)
    masks[3, 10:50, 10:50] = True
    crops[4] = np.random.default_rng(1).random((SIZE, SIZE, 3))
    masks[4] = True  # whole crop
    out = embedder.embed(crops, masks)
    assert out.shape == (n, FEATURE_DIM) and np.isfinite(out).all()
    assert embedder.embed(crops[:0], masks[:0]).shape == (0, FEATURE_DIM)
    # other input sizes are resized; a 2-D grey batch is accepted
    assert embedder.embed(crops[:2, :40, :50], masks[:2, :40, :50]).shape == (2, FEATURE_DIM)
    assert embedder.embed(crops[:2, ..., 0], masks[:2]).shape == (2, FEATURE_DIM)


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def test_rotation_and_scale_change_features_little(embedder):
    crops, masks = _batch(6, 1, lobes=3, nuc_r=6)
    crops2, masks2 = _batch(6, 2, lobes=1, nuc_r=14)
    base = embedder.embed(crops, masks)
    other = embedder.embed(crops2, masks2)
    rot = embedder.embed(np.rot90(crops, 1, axes=(1, 2)), np.rot90(masks, 1, axes=(1, 2)))
    big, bigm = _batch(6, 1, lobes=3, nuc_r=12, cell_r=44, size=128)  # same cells at 2x
    scaled = embedder.embed(big, bigm)
    gap_between = 1 - _cos(base, other).mean()  # cosine distance between two cell types
    gap_rot = 1 - _cos(base, rot).mean()
    gap_scaled = 1 - _cos(base, scaled).mean()
    assert gap_rot < 0.1
    assert gap_rot < 0.4 * gap_between, (gap_rot, gap_between)
    assert gap_scaled < 0.5 * gap_between, (gap_scaled, gap_between)


def test_synthetic_classes_are_separated(embedder):
    a_crops, a_masks = _batch(12, 3, lobes=3, nuc_r=6)  # "neutrophil": lobed nucleus
    b_crops, b_masks = _batch(12, 4, lobes=1, nuc_r=16, cyt=(0.75, 0.75, 0.9))  # "lymphocyte"
    emb = embedder.embed(np.concatenate([a_crops, b_crops]), np.concatenate([a_masks, b_masks]))
    y = np.array([0] * 12 + [1] * 12)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argsort(-sim, axis=1)[:, :5]
    pred = (y[nn].mean(1) > 0.5).astype(int)
    assert (pred == y).mean() == 1.0


def test_speed(embedder):
    crops, masks = _batch(32, 5, lobes=2, nuc_r=8)
    crops = np.stack([np.kron(c, np.ones((2, 2, 1), np.float32)) for c in crops])  # 128 px
    masks = np.stack([np.kron(m, np.ones((2, 2), bool)) for m in masks])
    embedder.embed(crops[:2], masks[:2])
    t0 = time.perf_counter()
    embedder.embed(crops, masks)
    rate = 32 / (time.perf_counter() - t0)
    assert rate > 10  # loose floor for shared CI machines; ~50-70/s measured on one busy core


@pytest.mark.slow
@pytest.mark.realdata
def test_pbc_reduced_cv():
    """Reduced PBC cross-validation (40 per class, 3 folds) through the pipeline and the
    suggester users run stays above a floor."""
    from _shared import shared_data
    from cellseek.config import Config
    from cellseek.io.labelled_set import load_labelled_set
    from cellseek.measure.evaluate import cross_validate, eval_set
    from cellseek.pipeline import Pipeline
    from cellseek.types import run_work

    ls = load_labelled_set(shared_data("pbc_subset", "labels.csv"))
    y_all = np.array(ls.labels)
    keep = np.concatenate([np.flatnonzero(y_all == c)[:40] for c in ls.classes])
    planes = run_work(Pipeline(Config(), ("classical",)).single_cells([ls.paths[i] for i in keep]))
    emb = np.concatenate([p.embeddings["classical"] for p in planes])
    data = eval_set("pbc-40", {"classical": emb}, list(y_all[keep]))
    macro = cross_validate(data, folds=3)["macro_accuracy"]
    assert macro > 0.70, f"reduced PBC CV macro accuracy {macro:.3f}"
