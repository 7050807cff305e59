"""Optional per-model PCA that shrinks the fused vector before indexing.

Each model's embeddings are L2-normalised (as :func:`cellseek.search.weighting.fuse` does),
centred and
projected on their leading principal components, fitted on the reference set.
:func:`cellseek.search.weighting.fuse` then normalises each reduced block again, so fused inner
products stay weighted sums of per-model cosines, now in the reduced spaces. Fitting streams
over the rows (a ``dim x dim`` covariance in float64), so a million reference cells fit in
memory; the projection is float32 and whitening is off by default (whitening stretches the noise
directions and usually hurts kNN on embeddings).

Example
-------
>>> reducer = ModelReducer.fit(embs, n_components=128)             # doctest: +SKIP
>>> fused = fuse(reducer.transform(embs), weights, models)         # doctest: +SKIP
>>> blob = reducer.to_bytes()  # keep with the store               # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

_CHUNK = 65_536


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


@dataclass(frozen=True)
class PCA:
    """A fitted principal component projection.

    Attributes
    ----------
    mean : ndarray
        float32 ``(dim,)``.
    components : ndarray
        float32 ``(k, dim)``, orthonormal rows, by decreasing variance.
    explained_variance : ndarray
        float32 ``(k,)``.
    total_variance : float
        Sum of the variances of every input dimension.
    whiten : bool
        Divide each component by its standard deviation.
    normalise : bool
        L2-normalise the rows before centring.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    total_variance: float
    whiten: bool = False
    normalise: bool = True

    @property
    def n_components(self) -> int:
        """Output size."""
        return int(self.components.shape[0])

    @property
    def explained_fraction(self) -> float:
        """Fraction of the input variance kept."""
        return float(self.explained_variance.sum() / max(self.total_variance, 1e-30))

    @classmethod
    def fit(cls, x: np.ndarray, n_components: int | float, *, whiten: bool = False,
            normalise: bool = True) -> PCA:
        """Fit on the rows of ``x``.

        Parameters
        ----------
        x : ndarray
            ``(n, dim)``; not modified.
        n_components : int or float
            Output size, or (a float in (0, 1)) the smallest size keeping that fraction of the
            variance.
        whiten : bool
        normalise : bool
            L2-normalise rows first (what fusion does).

        Returns
        -------
        PCA
        """
        x = np.asarray(x)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"PCA needs a (n >= 2, dim) matrix, got shape {x.shape}")
        n, dim = x.shape
        total = np.zeros(dim, np.float64)
        for start in range(0, n, _CHUNK):
            block = x[start : start + _CHUNK]
            total += (_unit(block) if normalise else block.astype(np.float32)).sum(axis=0)
        mean = total / n
        cov = np.zeros((dim, dim), np.float64)
        for start in range(0, n, _CHUNK):
            block = x[start : start + _CHUNK]
            block = (_unit(block) if normalise else block.astype(np.float32)) - mean
            cov += block.T.astype(np.float64) @ block.astype(np.float64)
        cov /= n - 1
        values, vectors = np.linalg.eigh(cov)
        values, vectors = values[::-1].clip(min=0), vectors[:, ::-1]
        if isinstance(n_components, float) and 0 < n_components < 1:
            cumulative = np.cumsum(values) / max(values.sum(), 1e-30)
            k = int(np.searchsorted(cumulative, n_components) + 1)
        else:
            k = int(n_components)
        if not 1 <= k <= dim:
            raise ValueError(f"n_components must be in 1..{dim}, got {n_components}")
        # a deterministic sign: the largest-magnitude entry of each component is positive
        comps = vectors[:, :k].T
        signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        comps = comps * np.where(signs == 0, 1, signs)[:, None]
        return cls(mean=mean.astype(np.float32), components=comps.astype(np.float32),
                   explained_variance=values[:k].astype(np.float32),
                   total_variance=float(values.sum()), whiten=whiten, normalise=normalise)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project rows: float32 ``(n, k)``."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected (n, {self.mean.shape[0]}) rows, got shape {x.shape}")
        x = _unit(x) if self.normalise else x.astype(np.float32)
        y = (x - self.mean) @ self.components.T
        if self.whiten:
            y /= np.sqrt(np.maximum(self.explained_variance, 1e-12))
        return np.ascontiguousarray(y, np.float32)

    def inverse_transform(self, y: np.ndarray) -> np.ndarray:
        """Back to the input space (of normalised rows when ``normalise``)."""
        y = np.asarray(y, np.float32)
        if self.whiten:
            y = y * np.sqrt(np.maximum(self.explained_variance, 1e-12))
        return (y @ self.components + self.mean).astype(np.float32)


@dataclass(frozen=True)
class ModelReducer:
    """One :class:`PCA` per model.

    Attributes
    ----------
    pcas : dict of str to PCA
    """

    pcas: dict

    @classmethod
    def fit(cls, embeddings: Mapping[str, np.ndarray],
            n_components: int | float | Mapping[str, int | float], *,
            whiten: bool = False) -> ModelReducer:
        """Fit a PCA per model on the reference set.

        Parameters
        ----------
        embeddings : mapping
            Model -> ``(n, dim_m)``.
        n_components : int, float or mapping
            Per model (a mapping) or for all; an int larger than a model's dim keeps its dim.
        whiten : bool
        """
        pcas = {}
        for model, emb in embeddings.items():
            k = n_components[model] if isinstance(n_components, Mapping) else n_components
            if not isinstance(k, float):
                k = min(int(k), np.shape(emb)[1])
            pcas[model] = PCA.fit(emb, k, whiten=whiten)
            logger.info("PCA %s: %d -> %d dims, %.1f %% of the variance", model,
                        np.shape(emb)[1], pcas[model].n_components,
                        100 * pcas[model].explained_fraction)
        return cls(pcas)

    @property
    def dims(self) -> dict[str, int]:
        """Model -> reduced dim."""
        return {m: p.n_components for m, p in self.pcas.items()}

    def transform(self, embeddings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Reduce each model's embeddings (models without a PCA pass through)."""
        return {m: self.pcas[m].transform(e) if m in self.pcas else np.asarray(e, np.float32)
                for m, e in embeddings.items()}

    def to_bytes(self) -> bytes:
        """An ``.npz`` blob (no pickles) for the store (see ``docs/scaling.md``)."""
        arrays = {}
        for m, p in self.pcas.items():
            arrays[f"{m}__mean"] = p.mean
            arrays[f"{m}__components"] = p.components
            arrays[f"{m}__explained_variance"] = p.explained_variance
            arrays[f"{m}__scalars"] = np.array([p.total_variance, p.whiten, p.normalise],
                                               np.float64)
        buf = io.BytesIO()
        np.savez(buf, models=np.array(sorted(self.pcas)), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ModelReducer:
        """Inverse of :meth:`to_bytes`."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            pcas = {}
            for m in npz["models"].tolist():
                total, whiten, normalise = npz[f"{m}__scalars"].tolist()
                pcas[m] = PCA(mean=npz[f"{m}__mean"], components=npz[f"{m}__components"],
                              explained_variance=npz[f"{m}__explained_variance"],
                              total_variance=float(total), whiten=bool(whiten),
                              normalise=bool(normalise))
        return cls(pcas)
