"""SAM segmentation: weights lookup, the embedding cache, point prompts, automatic mode.

A small random SAM stands in for the real checkpoint (see ``conftest.py``): structure only.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("segment_anything")

from cellseek.config import SegmentConfig  # noqa: E402
from cellseek.errors import CellseekError, MissingWeightsError  # noqa: E402
from cellseek.segment import sam_cache  # noqa: E402
from cellseek.segment.sam import SamSegmenter, plane_to_uint8_rgb, segment_plane_sam  # noqa: E402
from cellseek.types import Progress, run_work  # noqa: E402

from .conftest import SAM_FILE, save_small_sam  # noqa: E402

SMALL = dict(device="cpu", auto_mode="grid", points_per_side=2, tile_size=128, tile_overlap=32,
             pred_iou_thresh=0.0, stability_score_thresh=0.0, max_mask_fraction=1.0)


def _plane(seed=0, shape=(96, 112)):
    rng = np.random.default_rng(seed)
    plane = rng.normal(60, 5, shape).astype(np.float32)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    plane[(yy - shape[0] // 2) ** 2 + (xx - shape[1] // 2) ** 2 < 20**2] += 100
    return plane


@pytest.fixture
def seg(sam_env, tmp_path):
    return SamSegmenter("vit_b", cache_dir=tmp_path / "emb", **SMALL)


# -- input conversion ------------------------------------------------------------------------
def test_plane_to_uint8_rgb_handles_grey_float_rgba_and_nan():
    from cellseek.io.planes import plane_to_float_rgb

    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = plane_to_uint8_rgb(grey)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    # the one plane convention: grey is stretched, as for crops and thumbnails
    assert np.array_equal(out, np.rint(plane_to_float_rgb(grey) * 255).astype(np.uint8))
    rgb8 = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    assert np.array_equal(plane_to_uint8_rgb(rgb8), rgb8)  # uint8 RGB is kept

    f = np.linspace(0, 1, 1000, dtype=np.float32).reshape(20, 50)
    f_copy = f.copy()
    u = plane_to_uint8_rgb(f)
    assert u.min() == 0 and u.max() == 255
    assert np.array_equal(f, f_copy)  # input untouched

    u16 = (np.arange(100, dtype=np.uint16) * 600).reshape(10, 10)
    assert plane_to_uint8_rgb(u16).max() == 255

    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 3] = 255
    assert plane_to_uint8_rgb(rgba).shape == (5, 6, 3)
    assert plane_to_uint8_rgb(np.zeros((5, 6, 1), np.uint8)).shape == (5, 6, 3)

    nan = f.copy()
    nan[0, 0] = np.nan
    assert plane_to_uint8_rgb(nan)[0, 0, 0] == 0
    assert plane_to_uint8_rgb(np.full((4, 4), 7.0)).max() == 0  # constant plane: no crash

    for bad in (np.zeros((2, 3, 4, 5)), np.zeros(5), np.full((3, 3), np.nan)):
        with pytest.raises(CellseekError):
            plane_to_uint8_rgb(bad)


# -- weights ---------------------------------------------------------------------------------
def test_missing_weights_name_the_model_and_the_pull_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(MissingWeightsError) as info:
        SamSegmenter("vit_b", cache_dir=False)
    assert info.value.model == "sam_vit_b"
    message = str(info.value)
    assert "cellseek models pull sam_vit_b" in message
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in message
    with pytest.raises(MissingWeightsError):
        SamSegmenter("vit_b", checkpoint=tmp_path / "nope.pth")
    with pytest.raises(CellseekError):
        SamSegmenter("vit_x")


# -- embedding cache -------------------------------------------------------------------------
def test_embedding_is_cached_in_memory_and_on_disk(seg, tmp_path, count_encoder):
    calls = count_encoder(seg.model)
    plane = _plane()
    first = seg.image_embedding(plane)
    assert first.shape == (1, 256, 8, 8) and first.dtype == np.float32
    assert len(calls) == 1
    again = seg.image_embedding(plane.copy())  # same pixels, another array
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)

    files = list((tmp_path / "emb").glob("*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as z:
        assert '"model_type": "vit_b"' in str(z["signature"])
    assert not list((tmp_path / "emb").glob(".tmp-*"))

    # a new segmenter (empty memory) reads the file instead of encoding
    fresh = SamSegmenter("vit_b", cache_dir=tmp_path / "emb", **SMALL)
    assert fresh.model is seg.model  # the model is built once per process
    np.testing.assert_array_equal(fresh.image_embedding(plane), first)
    assert len(calls) == 1


def test_memory_cache_keeps_only_the_last_planes(sam_env, count_encoder):
    seg = SamSegmenter("vit_b", cache_dir=False, memory_items=2, **SMALL)
    calls = count_encoder(seg.model)
    planes = [_plane(seed) for seed in range(3)]
    for p in planes:
        seg.image_embedding(p)
    seg.image_embedding(planes[2])
    seg.image_embedding(planes[1])
    assert len(calls) == 3
    seg.image_embedding(planes[0])  # evicted, no disk cache: encoded again
    assert len(calls) == 4


def test_cache_is_invalidated_by_another_image_or_other_weights(seg, sam_env, tmp_path,
                                                                count_encoder):
    calls = count_encoder(seg.model)
    plane = _plane()
    base = seg.image_embedding(plane)
    other = plane.copy()
    other[0, 0] += 50
    seg.image_embedding(other)
    assert len(calls) == 2

    # the same image with other weights (another checkpoint file) must not reuse the embedding
    ckpt = save_small_sam(tmp_path / "other" / SAM_FILE, seed=1)
    seg2 = SamSegmenter("vit_b", checkpoint=ckpt, cache_dir=tmp_path / "emb", **SMALL)
    assert seg2.signature(plane_to_uint8_rgb(plane)) != seg.signature(plane_to_uint8_rgb(plane))
    calls2 = count_encoder(seg2.model)
    emb2 = seg2.image_embedding(plane)
    assert len(calls2) == 1
    assert not np.allclose(emb2, base)
    assert len(list((tmp_path / "emb").glob("*.npz"))) == 3


def test_corrupt_or_foreign_cache_files_are_recomputed(seg, tmp_path, count_encoder):
    calls = count_encoder(seg.model)
    plane = _plane()
    good = seg.image_embedding(plane)
    (path,) = (tmp_path / "emb").glob("*.npz")

    path.write_bytes(b"not an npz file")
    fresh = SamSegmenter("vit_b", cache_dir=tmp_path / "emb", **SMALL)
    np.testing.assert_array_equal(fresh.image_embedding(plane), good)
    assert len(calls) == 2
    with np.load(path) as z:  # rewritten, valid again
        assert z["features"].shape == good.shape

    # a valid file whose stored signature belongs to another image
    other = _plane(seed=5)
    fresh.image_embedding(other)
    (other_path,) = set((tmp_path / "emb").glob("*.npz")) - {path}
    os.replace(other_path, path)
    fresh3 = SamSegmenter("vit_b", cache_dir=tmp_path / "emb", **SMALL)
    np.testing.assert_array_equal(fresh3.image_embedding(plane), good)
    assert len(calls) == 4


def test_cache_write_is_atomic_and_failure_is_not_fatal(seg, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sam_cache.os, "replace", fail)
    emb = seg.image_embedding(_plane())  # still returns the embedding
    assert emb.shape == (1, 256, 8, 8)
    folder = tmp_path / "emb"
    assert not list(folder.glob("*.npz"))  # no half-written file under the final name
    assert not list(folder.glob(".tmp-*"))  # and the temporary file is gone


# -- point prompts ---------------------------------------------------------------------------
def test_segment_point_reuses_the_cached_embedding(seg, count_encoder):
    calls = count_encoder(seg.model)
    plane = _plane()
    seg.image_embedding(plane)
    mask = seg.segment_point(plane, (48, 56))
    mask2 = seg.segment_point(plane, (10.5, 20.2), multimask=False)
    assert len(calls) == 1  # no re-encoding for clicks
    for m in (mask, mask2):
        assert m.dtype == bool and m.shape == plane.shape
    with pytest.raises(CellseekError):
        seg.segment_point(plane, (96, 0))
    with pytest.raises(CellseekError):
        seg.segment_point(plane, (-1, 0))


def test_segment_point_equals_sam_predictors_best_mask(seg):
    plane = _plane(seed=3)
    seg.image_embedding(plane)
    for multimask in (True, False):
        mask = seg.segment_point(plane, (40, 50), multimask=multimask)
        predictor = seg._restore(seg._embedding(plane_to_uint8_rgb(plane)))
        masks, scores, _ = predictor.predict(point_coords=np.array([[50.0, 40.0]]),
                                             point_labels=np.array([1]),
                                             multimask_output=multimask)
        # the fast decoder re-associates float sums: a pixel whose logit is within rounding of
        # the threshold may flip, nothing more (the logits themselves are compared in
        # test_sam_fast_decoder.py)
        best = masks[int(np.argmax(scores))]
        assert best.any() or mask.any()
        assert (mask != best).mean() < 1e-3


def test_segment_point_on_a_tiled_plane_encodes_one_tile(seg, count_encoder):
    calls = count_encoder(seg.model)
    plane = np.dstack([_plane(shape=(150, 260))] * 3)
    mask = seg.segment_point(plane, (140, 250))
    assert mask.shape == (150, 260) and mask.dtype == bool
    assert len(calls) == 1
    assert not mask[:, :100].any()  # the far tile cannot contribute
    seg.segment_point(plane, (130, 240))  # same tile: cached
    assert len(calls) == 1


# -- automatic segmentation ------------------------------------------------------------------
def _check_labels(labels, shape):
    assert labels.dtype == np.int32 and labels.shape == shape
    values = np.unique(labels)
    assert values[0] >= 0
    assert set(values.tolist()) <= set(range(int(labels.max()) + 1))
    assert set(values[values > 0].tolist()) == set(range(1, int(labels.max()) + 1))


def test_segment_auto_returns_labels_and_yields_progress(seg, count_encoder):
    calls = count_encoder(seg.model)
    plane = _plane(shape=(100, 180))  # two tiles of 128 px
    progress = []
    labels = run_work(seg.segment_auto(plane), progress.append)
    _check_labels(labels, plane.shape)
    assert len(calls) == 2
    assert progress and all(isinstance(p, Progress) for p in progress)
    assert all(p.stage == "segment:sam" for p in progress)
    assert progress[-1].done == progress[-1].total > 0
    assert [p.done for p in progress] == sorted(p.done for p in progress)

    again = run_work(seg.segment_auto(plane))
    assert len(calls) == 2  # every tile's embedding came from the cache
    np.testing.assert_array_equal(again, labels)


def test_segment_auto_with_strict_filters_may_find_nothing(sam_env, tmp_path):
    kw = dict(SMALL, pred_iou_thresh=1.01)
    seg = SamSegmenter("vit_b", cache_dir=tmp_path / "emb", **kw)
    labels = run_work(seg.segment_auto(_plane().astype(np.uint16)))
    assert labels.shape == (96, 112) and labels.dtype == np.int32 and labels.max() == 0


def test_segment_plane_sam_and_the_dispatcher(sam_env, tmp_path):
    from cellseek.segment import segment_plane

    config = SegmentConfig(method="sam", sam_points_per_side=2, sam_tile_size=128,
                           sam_tile_overlap=32, min_area=0)
    plane = _plane()
    labels = run_work(segment_plane_sam(plane, config, device="cpu",
                                        cache_dir=tmp_path / "emb"))
    _check_labels(labels, plane.shape)
    # through the dispatcher (default cache folder under $CELLSEEK_CACHE_DIR)
    labels = run_work(segment_plane(plane, config))
    assert labels.shape == plane.shape and labels.dtype == np.int32
    assert list((tmp_path / "cache" / "sam_embeddings").glob("*.npz"))
