"""micro-sam's instance decoder: torch_em's UNETR decoder key for key, and the same output.

``data/micro_sam_decoder_*`` were written by ``scripts/make_zoo_reference_fixtures.py`` from
torch_em's ``UNETR`` (as micro-sam's ``get_unetr`` builds it) and micro-sam's ``DecoderAdapter``
forward, on deterministic weights, for both upsampling variants.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reference_weights import deterministic_input, deterministic_state  # noqa: E402

from cellseek.zoo.sam_instance_decoder import (  # noqa: E402
    build_instance_decoder,
    decoder_uses_conv_transpose,
    instances_from_decoder_output,
)

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("transposed", [False, True])
def test_decoder_matches_torch_em_key_for_key_and_numerically(transposed):
    tag = "transposed" if transposed else "interpolated"
    want = json.loads((DATA / f"micro_sam_decoder_keys_{tag}.json").read_text())
    decoder = build_instance_decoder(conv_transpose=transposed)
    state = decoder.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == want
    assert decoder_uses_conv_transpose(want) is transposed
    decoder.load_state_dict(deterministic_state({k: tuple(v) for k, v in want.items()}))
    with torch.inference_mode():
        out = decoder.eval()(deterministic_input((1, 256, 4, 4)))
    ref = np.load(DATA / f"micro_sam_decoder_output_{tag}.npy")
    assert out.shape[1:] == ref.shape == (3, 64, 64)
    assert ref.std() > 5e-3  # the outputs vary: a wrong layer would show
    # float rounding differs with the CPU and the thread count, and this deep random decoder
    # amplifies it (up to 1.7e-3 on an AMD EPYC with one thread, against an output spread of
    # 1.4e-2): the values must agree to a tenth of that spread and correlate almost perfectly,
    # which a wrong layer or a wrong order of operations would not.
    got = out[0].numpy()
    np.testing.assert_allclose(got, ref, atol=2.5e-3, rtol=0)
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.9999


def test_watershed_on_decoder_maps_separates_touching_cells():
    yy, xx = np.mgrid[:64, :96]
    d1 = np.hypot(yy - 32, xx - 30) / 16
    d2 = np.hypot(yy - 32, xx - 62) / 16
    fg = ((d1 < 1) | (d2 < 1)).astype(np.float32)
    center = np.minimum(d1, d2).clip(0, 1).astype(np.float32)
    boundary = (1 - np.abs(np.minimum(d1, d2) - 1)).clip(0, 1).astype(np.float32) * fg
    labels = instances_from_decoder_output(np.stack([fg, center, boundary]))
    assert labels.dtype == np.int32 and labels.max() == 2
    assert labels[32, 30] != labels[32, 62] and labels[0, 0] == 0
    assert instances_from_decoder_output(np.zeros((3, 8, 8), np.float32)).max() == 0
    small = instances_from_decoder_output(np.stack([fg, center, boundary]), min_size=10_000)
    assert small.max() == 0
