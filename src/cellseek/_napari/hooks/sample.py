"""Sample data hook: the bundled BCCD blood-smear fields as one stack."""

from __future__ import annotations

import numpy as np


def sample_smear() -> list[tuple]:
    """The six bundled blood-smear fields (640x480 RGB) stacked along a field axis.

    Returns
    -------
    list of tuple
        One napari LayerData tuple ``(data, kwargs, "image")``; the layer metadata say the
        leading axis is ``T`` (one field per step) so each field is a plane for cellseek.
    """
    from PIL import Image

    from cellseek.data import DATA_DIR, sample_fields

    paths = sample_fields()
    data = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    meta = {
        "cellseek": {
            "path": str(DATA_DIR / "fields"),
            "axes": "TYXS",
            "layer_axes": "TYXS",
            "device": "rgb",
            "fields": [p.name for p in paths],
        }
    }
    kwargs = {"name": "BCCD smear fields", "rgb": True, "axis_labels": ("t", "y", "x"),
              "metadata": meta}
    return [(data, kwargs, "image")]
