"""cellseek: annotate cells by similarity search.

The public API is imported lazily so that ``import cellseek`` stays light (no torch, faiss,
napari or Qt).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Session": "cellseek.session",
    "ReferenceStore": "cellseek.store.reference_store",
    "read_image": "cellseek.io",
    "Config": "cellseek.config",
    "load_embedder": "cellseek.zoo",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cellseek' has no attribute {name!r}")
