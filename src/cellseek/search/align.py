"""Per-source alignment of embeddings (device / dataset shift correction).

Cells imaged on another microscope land in another region of the embedding space: colour, blur
and magnification shift every feature a little. Aligning the statistics of each *source* removes
the shift that is shared by all cells of that source, whatever their class:

- ``"center"``: subtract each source's mean;
- ``"center_scale"``: subtract the mean and divide by the per-feature standard deviation;
- ``"coral"``: centre, whiten with the source covariance and re-colour with the pooled
  covariance of all sources (CORAL, Sun et al. 2016), with shrinkage.

Query statistics come from the unlabelled query cells themselves (transductive): legitimate,
since a user has the whole query image set before asking for suggestions. Statistics are
unsupervised (labels are never used), so class-balance differences between sources still leak
into the mean; the effect is measured in ``docs/classical.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

#: Methods of :class:`SourceAligner`.
METHODS = ("none", "center", "center_scale", "coral")
#: Every alignment the suggester offers (:class:`cellseek.config.AlignConfig`).
ALIGN_METHODS = ("none", "balanced", "center", "center_scale", "coral")


def center_scale_per_source(emb, sources, *, scale: bool = True, eps: float = 1e-6) -> np.ndarray:
    """Standardise every feature within each source (mean 0, and std 1 when ``scale``).

    Parameters
    ----------
    emb : ndarray
        ``(N, D)`` embeddings.
    sources : sequence
        ``N`` source names.
    scale : bool
        Also divide by the per-source, per-feature standard deviation.
    eps : float
        Floor of the standard deviation.

    Returns
    -------
    ndarray
        float32 ``(N, D)``.
    """
    return SourceAligner("center_scale" if scale else "center", eps=eps).fit_transform(emb, sources)


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 1e-8)
    p = -0.5 if inverse else 0.5
    return (vecs * vals**p) @ vecs.T


@dataclass
class SourceAligner:
    """Fit per-source statistics and transform embeddings source by source.

    Parameters
    ----------
    method : {"none", "center", "center_scale", "coral"}
    shrinkage : float
        CORAL covariance shrinkage towards its diagonal, in [0, 1] (small sources need more).
    eps : float
        Floor of standard deviations.
    min_cells : int
        Sources with fewer cells are only centred (their scale / covariance is not trusted).

    Attributes
    ----------
    stats_ : dict
        source -> dict of fitted statistics.
    """

    method: str = "center_scale"
    shrinkage: float = 0.5
    eps: float = 1e-6
    min_cells: int = 10
    stats_: dict = field(default_factory=dict)
    _target: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown alignment {self.method!r}; choose from {METHODS}")

    def _cov(self, x: np.ndarray) -> np.ndarray:
        c = np.cov(x, rowvar=False) if x.shape[0] > 1 else np.eye(x.shape[1])
        c = np.atleast_2d(c)
        return (
            (1 - self.shrinkage) * c
            + self.shrinkage * np.diag(np.diag(c))
            + self.eps * np.eye(c.shape[0])
        )

    def fit(self, emb, sources) -> SourceAligner:
        """Fit the statistics of every source found in ``sources``.

        Parameters
        ----------
        emb : ndarray
            ``(N, D)``.
        sources : sequence
            ``N`` source names.

        Returns
        -------
        SourceAligner
            ``self``.
        """
        x = np.asarray(emb, np.float64)
        src = np.asarray(sources).astype(str)
        if src.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} embeddings but {src.shape[0]} sources")
        self.stats_ = {}
        covs = []
        for s in np.unique(src):
            xs = x[src == s]
            st = {"n": xs.shape[0], "mean": xs.mean(axis=0)}
            if xs.shape[0] >= self.min_cells:
                st["std"] = np.maximum(xs.std(axis=0), self.eps)
                if self.method == "coral":
                    cov = self._cov(xs - st["mean"])
                    st["whiten"] = _sqrtm(cov, inverse=True)
                    covs.append((xs.shape[0], cov))
            self.stats_[s] = st
        if self.method == "coral" and covs:
            tot = sum(n for n, _ in covs)
            pooled = sum(n * c for n, c in covs) / tot
            self._target = _sqrtm(pooled)
        logger.debug("fitted %s alignment on %d sources", self.method, len(self.stats_))
        return self

    def transform(self, emb, sources) -> np.ndarray:
        """Align embeddings with the statistics of their source.

        Sources not seen by :meth:`fit` are fitted on the fly from the given rows (transductive).

        Returns
        -------
        ndarray
            float32 ``(N, D)``.
        """
        x = np.asarray(emb, np.float64)
        src = np.asarray(sources).astype(str)
        if self.method == "none":
            return x.astype(np.float32)
        out = np.empty_like(x)
        for s in np.unique(src):
            rows = src == s
            st = self.stats_.get(s)
            if st is None:
                tmp = SourceAligner(self.method, self.shrinkage, self.eps, self.min_cells)
                tmp.fit(x[rows], src[rows])
                st = tmp.stats_[s]
            xs = x[rows] - st["mean"]
            if self.method == "center_scale" and "std" in st:
                xs = xs / st["std"]
            elif self.method == "coral" and "whiten" in st and self._target is not None:
                xs = xs @ st["whiten"] @ self._target
            out[rows] = xs
        return out.astype(np.float32)

    def fit_transform(self, emb, sources) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same rows."""
        return self.fit(emb, sources).transform(emb, sources)


def source_offsets(emb, sources, classes=None, *, min_count: int = 3) -> dict[str, np.ndarray]:
    """Class-balanced offset of every source: the mean of its class means.

    A cell's class is its confirmed label, else its current suggestion; classes with fewer than
    ``min_count`` cells in a source are ignored, and a source without any usable class falls back
    to its plain mean. Plain per-source centring subtracts the source mean, which depends on the
    source's class mix (a neutrophil-rich smear has its mean near the neutrophils); the
    class-balanced mean does not.

    Parameters
    ----------
    emb : ndarray
        ``(N, D)`` embeddings.
    sources : sequence of str
        ``N`` source names.
    classes : sequence, optional
        ``N`` class names, ``None`` where unknown.
    min_count : int
        Smallest class size that counts.

    Returns
    -------
    dict
        Source -> float32 ``(D,)`` offset.
    """
    emb = np.asarray(emb, np.float64)
    sources = np.asarray(sources, dtype=object)
    classes = np.asarray(classes if classes is not None else [None] * len(emb), dtype=object)
    out = {}
    for s in dict.fromkeys(sources.tolist()):
        rows = sources == s
        known = rows & (classes != None)  # noqa: E711 - elementwise comparison with None
        labels = classes[known].astype(str)
        groups = [emb[known][labels == c].mean(axis=0) for c in np.unique(labels)
                  if (labels == c).sum() >= min_count]
        out[s] = (np.mean(groups, axis=0) if groups else emb[rows].mean(axis=0)).astype(np.float32)
    return out


class UnknownSourceError(KeyError):
    """An alignment was asked to transform cells of a source it was not fitted on."""


@dataclass
class Alignment:
    """Per-source alignment of every model's embeddings, fitted once, applied to any cells.

    Parameters
    ----------
    method : str
        One of :data:`ALIGN_METHODS`. ``"balanced"``: subtract the source's class-balanced mean
        (:func:`source_offsets`); ``"center"``: its plain mean; ``"center_scale"``,
        ``"coral"``: :class:`SourceAligner` fitted per model.
    offsets : dict
        ``"balanced"``/``"center"``: source -> model -> float32 offset.
    aligners : dict
        ``"center_scale"``/``"coral"``: model -> fitted :class:`SourceAligner`.
    """

    method: str = "none"
    offsets: dict = field(default_factory=dict)
    aligners: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, method: str, embeddings: Mapping[str, np.ndarray], sources: Sequence[str],
            classes: Sequence | None = None, *, min_count: int = 3) -> Alignment:
        """Fit on cells of every source (reference and query cells alike: transductive).

        Parameters
        ----------
        method : str
            One of :data:`ALIGN_METHODS`.
        embeddings : mapping
            Model -> ``(N, d)``.
        sources : sequence of str
            ``N`` source names.
        classes : sequence, optional
            ``N`` classes (confirmed label or current suggestion; None where unknown); used by
            ``"balanced"`` only. Query labels are never used.
        min_count : int
            ``"balanced"``: smallest class size that counts in a source's mean.
        """
        if method not in ALIGN_METHODS:
            raise ValueError(f"unknown alignment {method!r}; choose from {ALIGN_METHODS}")
        out = cls(method)
        if method == "none":
            return out
        sources = [str(s) for s in sources]
        if method in ("balanced", "center"):
            per_model = {m: source_offsets(e, sources, classes if method == "balanced" else None,
                                           min_count=min_count)
                         for m, e in embeddings.items()}
            out.offsets = {s: {m: per_model[m][s] for m in embeddings}
                           for s in dict.fromkeys(sources)}
        else:
            out.aligners = {m: SourceAligner(method).fit(e, sources)
                            for m, e in embeddings.items()}
        return out

    @property
    def sources(self) -> set[str]:
        """Sources the alignment knows (every source for ``"none"``: empty set)."""
        if self.aligners:
            return set(next(iter(self.aligners.values())).stats_)
        return set(self.offsets)

    def knows(self, sources: Sequence[str]) -> bool:
        """Whether every source given was seen by :meth:`fit` (always true for ``"none"``)."""
        return self.method == "none" or set(map(str, sources)) <= self.sources

    def transform(self, embeddings: Mapping[str, np.ndarray],
                  sources: Sequence[str]) -> dict[str, np.ndarray]:
        """Model -> float32 aligned embeddings.

        Raises
        ------
        UnknownSourceError
            A source was not seen by :meth:`fit` (refit with its cells).
        """
        if self.method == "none":
            return {m: np.asarray(e, np.float32) for m, e in embeddings.items()}
        sources = [str(s) for s in sources]
        if not self.knows(sources):
            raise UnknownSourceError(sorted(set(sources) - self.sources))
        if self.aligners:
            return {m: self.aligners[m].transform(e, sources) for m, e in embeddings.items()}
        out = {}
        for m, e in embeddings.items():
            e = np.asarray(e, np.float32)
            if not len(sources):
                out[m] = e
                continue
            out[m] = e - np.stack([self.offsets[s][m] for s in sources])
        return out
