"""2-D maps of cell embeddings: PCA by SVD, UMAP when the ``umap`` package is installed."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


def umap_available() -> bool:
    """Whether ``umap-learn`` is installed (checked without importing it)."""
    return importlib.util.find_spec("umap") is not None


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components.

    Parameters
    ----------
    x : ndarray
        ``(n, d)`` vectors. Not modified.

    Returns
    -------
    ndarray
        ``(n, 2)`` float32 coordinates (zeros where there is no variance). The sign of each
        component is fixed so that its largest loading is positive (deterministic output).
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an (n, d) array, got shape {x.shape}")
    out = np.zeros((x.shape[0], 2), np.float32)
    if x.shape[0] < 2:
        return out
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    n = min(2, vt.shape[0])
    comps = vt[:n]
    signs = np.sign(comps[np.arange(n), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    proj = centred @ comps.T
    proj[:, s[:n] <= 1e-12 * max(s[0], 1e-300)] = 0.0
    out[:, :n] = proj
    return out


def embedding_map(x: np.ndarray, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """2-D coordinates of embeddings for a scatter plot.

    Parameters
    ----------
    x : ndarray
        ``(n, d)`` vectors.
    method : {"pca", "umap"}
        ``"umap"`` falls back to PCA (with a log message) when umap is absent or there are too
        few points.
    seed : int
        Random state for UMAP.

    Returns
    -------
    ndarray
        ``(n, 2)`` float32.
    """
    if method not in ("pca", "umap"):
        raise ValueError(f"method must be 'pca' or 'umap', got {method!r}")
    x = np.asarray(x, np.float32)
    if method == "umap":
        if not umap_available() or len(x) < 10:
            logger.info("UMAP unavailable or too few cells (%d); using PCA", len(x))
        else:
            import umap

            reducer = umap.UMAP(n_components=2, random_state=seed,
                                n_neighbors=min(15, len(x) - 1))
            return reducer.fit_transform(x).astype(np.float32)
    return pca_2d(x)


#: Most cells drawn in the embedding map (a random subset beyond).
MAP_MAX_CELLS = 5000


@dataclass(frozen=True)
class MapData:
    """Points of an embedding map: cell ids, 2-D coordinates, confirmed and suggested class."""

    ids: np.ndarray
    xy: np.ndarray
    labels: list
    suggestions: list


def session_map(session, *, max_cells: int = MAP_MAX_CELLS, method: str = "pca",
                seed: int = 0) -> MapData:
    """A 2-D map of a session's cells in the space its suggestions search.

    The vectors are :meth:`cellseek.session.Session.fused_vectors`: source offsets removed,
    model weights applied and the index's PCA when it is configured, so the map shows the
    neighbourhoods the suggestions come from.

    Parameters
    ----------
    session : cellseek.session.Session
    max_cells : int
        A random subset (fixed by ``seed``) beyond this many cells.
    method : {"pca", "umap"}
    seed : int

    Returns
    -------
    MapData
    """
    cells = session.store.cells()
    if len(cells) > max_cells:
        rng = np.random.default_rng(seed)
        cells = [cells[i] for i in np.sort(rng.choice(len(cells), max_cells, replace=False))]
    if not cells:
        return MapData(np.zeros(0, np.int64), np.zeros((0, 2), np.float32), [], [])
    ids = np.asarray([c["id"] for c in cells], np.int64)
    session.index()  # fits the PCA the fused vectors go through, when configured
    xy = embedding_map(session.fused_vectors(ids), method, seed=seed)
    return MapData(ids, xy, [c["label"] for c in cells], [c["suggestion"] for c in cells])
