"""Fixtures for the SAM tests: a small, randomly initialised SAM saved as an official checkpoint.

The stand-in keeps SAM's real architecture (ViT encoder with windowed and global attention, the
neck, the prompt encoder and the mask decoder) but only two encoder blocks, a narrow width and a
128 px input, so a CPU encodes a tile in well under a second. The masks it predicts are
meaningless: the tests check structure and caching, never quality.
"""

from __future__ import annotations

import pytest

SAM_FILE = "sam_vit_b_01ec64.pth"
#: Encoder layout of the stand-in (vit_b's patch, window and head size; fewer, narrower blocks).
SMALL_LAYOUT = dict(img_size=128, depth=2, embed_dim=128, num_heads=2, global_attn_indexes=(1,))


def save_small_sam(path, seed: int = 0):
    """Write a small random SAM's state dict to ``path``; returns the path."""
    import torch

    from cellseek.zoo.sam_backend import build_sam_model

    torch.manual_seed(seed)
    model = build_sam_model("vit_b", **SMALL_LAYOUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), str(path))
    return path


@pytest.fixture(scope="session")
def sam_weights_dir(tmp_path_factory):
    """A weights folder holding a small SAM under the official vit_b file name."""
    pytest.importorskip("segment_anything")
    import torch

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    root = tmp_path_factory.mktemp("sam_weights")
    save_small_sam(root / SAM_FILE)
    return root


@pytest.fixture
def sam_env(sam_weights_dir, tmp_path, monkeypatch, no_packaged_weights):
    """``$CELLSEEK_WEIGHTS_DIR`` at the small SAM (the only SAM: the packaged LiteMedSAM is
    hidden); caches and homes inside ``tmp_path``."""

    monkeypatch.setenv("CELLSEEK_WEIGHTS_DIR", str(sam_weights_dir))
    monkeypatch.setenv("CELLSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return sam_weights_dir


@pytest.fixture
def count_encoder(monkeypatch):
    """``count_encoder(model)`` wraps its image encoder; returns a list with one entry per call."""

    def wrap(model):
        calls = []
        encoder = model.image_encoder
        original = encoder.forward

        def forward(x):
            calls.append(tuple(x.shape))
            return original(x)

        monkeypatch.setattr(encoder, "forward", forward)
        return calls

    return wrap
