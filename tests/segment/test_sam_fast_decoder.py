"""The rearranged point decoder computes SAM's own mask decoder, only with less arithmetic.

Checked on SAM's real decoder architecture at random initialisation (the full-size decoder, and
the small stand-in of ``conftest.py``): the low-resolution logits of the kept mask and its
predicted IoU must equal those of ``segment_anything``'s ``MaskDecoder`` to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from cellseek.segment.sam_fast_decoder import FastPointDecoder  # noqa: E402


def _reference(model, features, points, labels, multimask):
    with torch.inference_mode():
        sparse, dense = model.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        low, iou = model.mask_decoder(
            image_embeddings=features,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
    best = int(torch.argmax(iou[0]))
    return low[0, best], float(iou[0, best])


@pytest.fixture(scope="module")
def model():
    from cellseek.zoo.sam_backend import build_sam_model

    from .conftest import SMALL_LAYOUT

    torch.manual_seed(1)
    return build_sam_model("vit_b", **SMALL_LAYOUT).eval()


@pytest.mark.parametrize("multimask", [True, False])
def test_logits_and_iou_equal_the_original_decoder(model, multimask):
    grid = model.image_encoder.img_size // 16
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(1, 256, grid, grid, generator=gen)
    decoder = FastPointDecoder(model)
    decoder.set_image(features)
    for points in ([[10.0, 20.0]], [[100.0, 64.0]], [[5.0, 120.0], [60.0, 60.0]]):
        pts = torch.tensor([points])
        labels = torch.tensor([[1] + [0] * (len(points) - 1)], dtype=torch.int)
        logits, iou = decoder.predict(pts, labels, multimask=multimask)
        ref, ref_iou = _reference(model, features, pts, labels, multimask)
        assert logits.shape == (1, 1, 4 * grid, 4 * grid) == (1, 1, *ref.shape)
        scale = float(ref.abs().max())
        assert scale > 0
        np.testing.assert_allclose(logits[0, 0].numpy(), ref.numpy(), atol=1e-4 * scale,
                                   rtol=1e-4)
        assert iou == pytest.approx(ref_iou, rel=1e-4, abs=1e-5)
        assert ((logits[0, 0] > 0) == (ref > 0)).float().mean() > 0.999


def test_a_new_image_replaces_the_cached_keys(model):
    grid = model.image_encoder.img_size // 16
    decoder = FastPointDecoder(model)
    pts = torch.tensor([[[30.0, 40.0]]])
    labels = torch.ones((1, 1), dtype=torch.int)
    with pytest.raises(RuntimeError, match="set_image"):
        decoder.predict(pts, labels)
    a = torch.randn(1, 256, grid, grid, generator=torch.Generator().manual_seed(1))
    b = torch.randn(1, 256, grid, grid, generator=torch.Generator().manual_seed(2))
    decoder.set_image(a)
    decoder.set_image(b)
    logits, _ = decoder.predict(pts, labels)
    ref, _ = _reference(model, b, pts, labels, True)
    np.testing.assert_allclose(logits[0, 0].numpy(), ref.numpy(),
                               atol=1e-4 * float(ref.abs().max()))


def test_full_size_decoder_on_a_1024_px_grid():
    """SAM's real decoder dimensions on the 64 x 64 grid of a 1024 px input."""
    from segment_anything import sam_model_registry

    torch.manual_seed(2)
    sam = sam_model_registry["vit_b"]().eval()
    features = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(3))
    decoder = FastPointDecoder(sam)
    decoder.set_image(features)
    pts = torch.tensor([[[300.0, 700.0]]])
    labels = torch.ones((1, 1), dtype=torch.int)
    logits, iou = decoder.predict(pts, labels)
    ref, ref_iou = _reference(sam, features, pts, labels, True)
    np.testing.assert_allclose(logits[0, 0].numpy(), ref.numpy(),
                               atol=1e-4 * float(ref.abs().max()))
    assert iou == pytest.approx(ref_iou, rel=1e-4, abs=1e-5)
