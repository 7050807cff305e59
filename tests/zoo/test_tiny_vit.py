"""MobileSAM's TinyViT (``vit_t``): key-for-key layout and output against MobileSAM's own code.

``data/mobile_sam_vit_t_keys.json`` and ``data/mobile_sam_vit_t_output.npy`` were written by
``scripts/make_zoo_reference_fixtures.py`` from MobileSAM's ``build_sam_vit_t`` (the code that
reads ``mobile_sam.pt``), the output on deterministic weights (``reference_weights.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from reference_weights import deterministic_input, deterministic_state  # noqa: E402

from cellseek.zoo.sam_arch import arch_of_state_dict, build_sam_model  # noqa: E402
from cellseek.zoo.tiny_vit import build_tiny_vit  # noqa: E402

DATA = Path(__file__).parent / "data"


def test_vit_t_sam_has_mobile_sams_keys_and_shapes():
    want = json.loads((DATA / "mobile_sam_vit_t_keys.json").read_text())
    sam = build_sam_model("vit_t")
    got = {k: list(v.shape) for k, v in sam.state_dict().items()}
    assert got == want
    assert arch_of_state_dict(sam.state_dict()) == "vit_t"
    encoder = sum(p.numel() for n, p in sam.image_encoder.named_parameters()
                  if not n.startswith(("head.", "norm_head.")))
    assert 5.5e6 < encoder < 6.0e6  # "5.7 M parameters"


# not slow: 1-4 s, and it is what proves the real layout (issue 15)
def test_vit_t_output_equals_mobile_sams_on_the_same_weights():
    enc = build_tiny_vit(1024)
    shapes = {k: v.shape for k, v in enc.state_dict().items()}
    enc.load_state_dict(deterministic_state(shapes))
    with torch.inference_mode():
        out = enc.eval()(deterministic_input((1, 3, 1024, 1024)))
    want = np.load(DATA / "mobile_sam_vit_t_output.npy")
    got = out[0, :, ::8, ::8].numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=1e-4)


def test_vit_t_runs_at_other_sizes_and_uses_loaded_attention_biases():
    enc = build_tiny_vit(256).eval()  # eval before loading: biases must not be cached stale
    x = deterministic_input((1, 3, 256, 256))
    with torch.inference_mode():
        before = enc(x)
    assert tuple(before.shape) == (1, 256, 16, 16) and torch.isfinite(before).all()
    state = enc.state_dict()
    for key in state:
        if key.endswith("attention_biases"):
            state[key] = torch.full_like(state[key], 3.0) * torch.arange(state[key].shape[1])
    enc.load_state_dict(state)
    with torch.inference_mode():
        after = enc(x)
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError, match="multiple of 64"):
        build_tiny_vit(100)
