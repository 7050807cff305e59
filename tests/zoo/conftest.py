"""Fixtures for the zoo tests: small crops and helpers that write checkpoints."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    """Keep torch from oversubscribing the (shared, small) test machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, 2))
    yield
    torch.set_num_threads(before)


@pytest.fixture
def crops():
    """Five crops of a size no model uses natively, with masks."""
    rng = np.random.default_rng(1)
    x = rng.random((5, 40, 48, 3), dtype=np.float32)
    m = np.zeros((5, 40, 48), dtype=bool)
    m[:, 8:32, 10:38] = True
    return x, m


class _Writers:
    """Checkpoint writers handed to tests by the ``writers`` fixture."""

    @staticmethod
    def safetensors(state_dict, path):
        return save_safetensors(state_dict, path)

    @staticmethod
    def pth(obj, path):
        return save_pth(obj, path)


@pytest.fixture
def writers():
    """``writers.safetensors(state_dict, path)`` and ``writers.pth(obj, path)``."""
    return _Writers


def save_safetensors(state_dict, path):
    """Write a torch state dict as safetensors (contiguous, unshared tensors)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in state_dict.items()}, str(path))
    return path


def save_pth(obj, path):
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, str(path))
    return path
