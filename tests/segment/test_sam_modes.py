"""SAM automatic modes (decoder, seeds), pre-computation and thread-safe encoding.

Small random SAMs (real architectures) stand in for the checkpoints: structure, caching and
control flow are checked, never mask quality.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from cellseek.segment.sam import (  # noqa: E402
    SamSegmenter,
    precompute_order,
    shared_segmenter,
)
from cellseek.types import run_work  # noqa: E402
from cellseek.zoo.sam_loader import clear_model_cache  # noqa: E402

from .conftest import SMALL_LAYOUT  # noqa: E402

KW = dict(device="cpu", tile_size=128, tile_overlap=32, max_mask_fraction=1.0)


def _discs(shape=(120, 200), centres=((40, 50), (80, 140))):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    plane = np.full(shape, 40.0, np.float32)
    for r, c in centres:
        plane[(yy - r) ** 2 + (xx - c) ** 2 < 15**2] = 200.0
    return plane


@pytest.fixture
def lm_weights(tmp_path, monkeypatch):
    """A micro-sam-style vit_b_lm (small ViT) with its decoder file, in a weights folder."""
    from cellseek.zoo.sam_arch import build_sam_model
    from cellseek.zoo.sam_instance_decoder import build_instance_decoder

    torch.manual_seed(0)
    folder = tmp_path / "w" / "sam_vit_b_lm"
    folder.mkdir(parents=True)
    torch.save(build_sam_model("vit_b", **SMALL_LAYOUT).state_dict(), folder / "vit_b_lm.pt")
    torch.save(build_instance_decoder().state_dict(), folder / "vit_b_lm_decoder.pt")
    monkeypatch.setenv("CELLSEEK_CACHE_DIR", str(tmp_path / "cache"))
    clear_model_cache()
    return tmp_path / "w"


def test_decoder_mode_is_chosen_when_the_model_has_a_decoder(lm_weights, tmp_path):
    seg = SamSegmenter("vit_b_lm", weights_dir=lm_weights, cache_dir=tmp_path / "e", **KW)
    assert seg.resolved_auto_mode() == "decoder"
    progress = []
    labels = run_work(seg.segment_auto(_discs()), progress.append)
    assert labels.shape == (120, 200) and labels.dtype == np.int32
    assert "(decoder)" in progress[-1].message
    values = np.unique(labels)
    assert set(values[values > 0].tolist()) == set(range(1, int(labels.max()) + 1))


def test_seeds_mode_prompts_one_point_per_classical_object(sam_env, tmp_path, monkeypatch):
    seg = SamSegmenter("vit_b", cache_dir=tmp_path / "e", **KW)
    assert seg.resolved_auto_mode() == "seeds"  # official SAM: no decoder
    plane = _discs()
    seeds = seg._seeds(plane_to_rgb(plane), plane)
    assert len(seeds) == 2
    for r, c, (r0, c0, r1, c1) in seeds:
        assert r0 <= r < r1 and c0 <= c < c1 and plane[r, c] == 200.0  # inside its object
    prompted = []
    original = seg._seed_masks

    def spy(emb, tile_seeds):
        prompted.append(len(tile_seeds))
        return (yield from original(emb, tile_seeds))

    monkeypatch.setattr(seg, "_seed_masks", spy)
    labels = run_work(seg.segment_auto(plane))
    assert sum(prompted) == 2  # each seed decoded once, in the tile whose core holds it
    assert labels.shape == plane.shape and labels.dtype == np.int32
    # a blank plane has no seeds: no tile is encoded
    calls = []
    monkeypatch.setattr(seg, "_embedding", lambda image: calls.append(image))
    assert run_work(seg.segment_auto(np.zeros((64, 64), np.float32))).max() == 0
    assert calls == []


def plane_to_rgb(plane):
    from cellseek.segment.sam import plane_to_uint8_rgb

    return plane_to_uint8_rgb(plane)


def test_precompute_embeds_in_order_and_can_be_cancelled(sam_env, tmp_path, count_encoder):
    seg = SamSegmenter("vit_b", cache_dir=tmp_path / "e", **KW)
    calls = count_encoder(seg.model)
    planes = {t: _discs(shape=(100, 100), centres=((30 + 5 * t, 40),)) for t in range(4)}
    order = precompute_order(list(planes), 2)
    assert order == [2, 3, 1, 0]
    gen = seg.precompute((t, planes[t]) for t in order)
    next(gen)  # progress before plane 2
    next(gen)  # plane 2 encoded, progress before plane 3
    gen.close()  # the user moved on: cancel
    assert len(calls) == 1 and seg.is_embedded(planes[2]) and not seg.is_embedded(planes[3])
    encoded = run_work(seg.precompute([(t, (lambda t=t: planes[t])) for t in order]))
    assert encoded == 3 and len(calls) == 4  # plane 2 was cached
    seg.segment_point(planes[3], (50, 40))  # the next time point: no encoding on click
    assert len(calls) == 4


def test_a_click_waits_for_the_background_encoding_of_its_plane(sam_env, tmp_path):
    seg = SamSegmenter("vit_b", cache_dir=False, **KW)
    plane = _discs(shape=(100, 100), centres=((50, 50),))
    encoder = seg.model.image_encoder
    original = encoder.forward
    calls = []

    def slow(x):
        calls.append(1)
        time.sleep(0.5)
        return original(x)

    encoder.forward = slow
    try:
        worker = threading.Thread(target=lambda: run_work(seg.precompute([plane])))
        worker.start()
        time.sleep(0.1)  # the worker is encoding
        mask = seg.segment_point(plane, (50, 50))
        worker.join()
    finally:
        del encoder.forward
    assert mask.shape == plane.shape
    assert len(calls) == 1  # the click used the worker's embedding


def test_shared_segmenter_and_auto_model(sam_env):
    a = shared_segmenter("auto", device="cpu", cache_dir=False)
    assert a is shared_segmenter("auto", device="cpu", cache_dir=False)
    assert a.model_type == "vit_b" and "vit_b on the CPU" in a.model_reason
