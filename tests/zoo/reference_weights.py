"""Deterministic weights and inputs for comparing our modules with their reference code.

The values come from a formula (no random generator), so the reference outputs stored in
``tests/zoo/data/`` (written by ``scripts/make_zoo_reference_fixtures.py`` from MobileSAM's and
torch_em's own code) can be reproduced anywhere.
"""

from __future__ import annotations

import math


def deterministic_state(shapes: dict) -> dict:
    """A state dict with smooth, varied values for ``{key: shape}`` (sorted keys)."""
    import torch

    out = {}
    for i, key in enumerate(sorted(shapes)):
        shape = tuple(shapes[key])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
            continue
        n = math.prod(shape)
        t = torch.arange(n, dtype=torch.float64)
        values = torch.sin(0.37 * t + i) * 0.05
        if key.endswith("running_var"):
            values = 1.0 + values.abs() * 10
        out[key] = values.reshape(shape).float()
    return out


def deterministic_input(shape) -> object:
    """A smooth input tensor of ``shape`` with values in [-1, 1]."""
    import torch

    n = math.prod(shape)
    return torch.sin(0.013 * torch.arange(n, dtype=torch.float64)).reshape(shape).float()
