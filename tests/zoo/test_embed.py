"""embed_crops / embed_all generators and the raw-forward hook."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.types import Progress, run_work
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.embed import embed_all, embed_crops, raw_forward_fn


class MeanColour:
    """A stand-in embedder: per-crop mean colour, counting its calls."""

    def __init__(self, name="mean", dim=3):
        self.spec = ModelSpec(name=name, backend="test", factory="x:y", dim=dim)
        self.calls = []

    def embed(self, crops, masks):
        self.calls.append(len(crops))
        return crops.mean(axis=(1, 2)).astype(np.float32)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((10, 8, 8, 3), dtype=np.float32), np.ones((10, 8, 8), bool)


def test_embed_crops_yields_progress_and_returns_matrix(data):
    crops, masks = data
    before = crops.copy()
    emb = MeanColour()
    work = embed_crops(emb, crops, masks, batch_size=4)
    seen = []
    out = run_work(work, seen.append)
    assert [p.done for p in seen] == [0, 4, 8, 10]
    assert all(isinstance(p, Progress) and p.total == 10 for p in seen)
    assert {p.stage for p in seen} == {"embed:mean"}
    assert emb.calls == [4, 4, 2]
    np.testing.assert_allclose(out, crops.mean(axis=(1, 2)))
    assert out.dtype == np.float32 and out.shape == (10, 3)
    np.testing.assert_array_equal(crops, before)


def test_embed_crops_is_cancellable_between_batches(data):
    emb = MeanColour()
    work = embed_crops(emb, *data, batch_size=2)
    next(work)
    next(work)
    work.close()  # the consumer stops iterating
    assert emb.calls == [2]


def test_embed_crops_empty_and_bad_input(data):
    crops, masks = data
    out = run_work(embed_crops(MeanColour(), crops[:0], masks[:0]))
    assert out.shape == (0, 3)
    with pytest.raises(ValueError, match="masks"):
        run_work(embed_crops(MeanColour(), crops, masks[:3]))
    with pytest.raises(ValueError, match="batch_size"):
        run_work(embed_crops(MeanColour(), crops, masks, batch_size=0))

    class Wrong(MeanColour):
        def embed(self, crops, masks):
            return np.zeros((len(crops), 5), np.float32)

    with pytest.raises(ValueError, match="shape"):
        run_work(embed_crops(Wrong(), crops, masks))


def test_embed_all(data):
    crops, masks = data
    a, b = MeanColour("a"), MeanColour("b")
    seen = []
    out = run_work(embed_all([a, b], crops, masks, batch_size=5), seen.append)
    assert set(out) == {"a", "b"}
    assert [p.stage for p in seen] == ["embed:a"] * 3 + ["embed:b"] * 3
    assert seen[-1].message == "model 2/2"
    np.testing.assert_array_equal(out["a"], out["b"])


def test_raw_forward_fn_for_plain_embedder(data):
    emb = MeanColour()
    raw = raw_forward_fn(emb)
    np.testing.assert_array_equal(raw.forward(raw.prepare(*data)), emb.embed(*data))


def test_torch_embedder_pipeline_matches_raw_forward(data):
    torch = pytest.importorskip("torch")
    from cellseek.zoo._torch_utils import TorchEmbedder

    spec = ModelSpec(name="tiny", backend="test", factory="x:y", dim=4, input_size=16)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    emb = TorchEmbedder(spec, model, device="cpu", batch_size=3)
    crops, masks = data
    seen = []
    out = run_work(embed_crops(emb, crops, masks, batch_size=4), seen.append)
    assert [p.done for p in seen] == [0, 4, 8, 10]
    raw = raw_forward_fn(emb)
    x = raw.prepare(crops, masks)
    assert tuple(x.shape) == (10, 3, 16, 16)
    np.testing.assert_allclose(out, raw.forward(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb.embed(crops, masks), out, rtol=1e-5, atol=1e-6)
    # preprocessing: antialiased resize then (x - mean) / std
    flat = np.full((1, 16, 16, 3), 0.5, np.float32)
    expected = (0.5 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(emb.preprocess(flat)[0, :, 0, 0].numpy(), expected, rtol=1e-5)
