"""Linear heads learned from the confirmed cells, on the suggester's vectors.

Foundation-model and hand-crafted embeddings carry many directions that do not matter for the
user's classes; a linear classifier trained on the confirmed cells learns which separate them.
Two heads (scikit-learn), on standardised vectors:

- ``"lda"``: linear discriminant analysis with Ledoit-Wolf shrinkage. Closed form (no
  iterations): it refits in milliseconds when labels change and stays usable with a handful of
  cells per class;
- ``"logistic"``: L2-regularised logistic regression, what napari-feature-classifier or
  CellProfiler Analyst would train; better than LDA once there are many confirmed cells, slower
  to fit (it is trained on at most :data:`LOGISTIC_MAX_TRAIN` cells).

Whether a head is used for a source is decided by :mod:`cellseek.search.choice`: it can learn the
reference device as much as the classes.

The fitted head is kept as plain arrays (standardisation, coefficients, intercepts, classes), so
it can be saved with the store and evaluated with NumPy alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The heads, by name.
HEADS = ("lda", "logistic")
#: At most this many cells (a class-stratified sample) train the logistic head.
LOGISTIC_MAX_TRAIN = 5000
#: At most this many cells (a class-stratified sample) train the LDA head: class means and one
#: shrunk covariance are well estimated from 10,000 cells, and the refit after each label change
#: stays near 0.1 s on 2 cores however large the reference set grows (20,000 cells: 0.21-0.25 s).
LDA_MAX_TRAIN = 10_000


def stratified_cap(labels: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """Row indices: all rows, or at most ``cap`` keeping every class's share (each class at most
    ``cap // n_classes`` rows, drawn at random with ``seed``; rows in their original order)."""
    n = len(labels)
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = max(cap // len(classes), 1)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per]
                                   for c in classes]))


def shrinkage_lda(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shrinkage LDA as scikit-learn fits it (``solver="lsqr", shrinkage="auto"``), solved
    without an SVD of the ``d x d`` covariance.

    The pooled covariance is scikit-learn's: per class k, the Ledoit-Wolf estimate of the
    class's standardised vectors ``z_k`` (shrinkage ``a_k``, mean variance ``mu_k``) scaled back
    by the class's spreads ``D_k`` and weighted by its share ``p_k``. It is a positive diagonal
    plus a matrix of rank at most n (the cells)::

        cov = sum_k p_k a_k mu_k D_k^2  +  U U^T,   U = [sqrt(p_k (1 - a_k) / n_k) D_k z_k^T]

    so ``cov @ coef.T = means.T`` is solved with the Woodbury identity (an ``n x n`` system) when
    there are fewer cells than half the dimensions — the usual case with the 2,275 dimensions of
    the default preset and a few hundred confirmed cells — and by a Cholesky factorisation
    otherwise; scikit-learn's ``lstsq`` (an SVD of the full covariance) took minutes over the
    folds of a validation. The coefficients are scikit-learn's (``tests/search/test_learned.py``).

    Returns
    -------
    classes, coef, intercept
        Sorted class names; ``(C, d)`` and ``(C,)``, or ``(1, d)`` and ``(1,)`` for two classes
        (the second class's logit), as scikit-learn's ``LinearDiscriminantAnalysis``.
    """
    from scipy import linalg
    from sklearn.covariance import ledoit_wolf_shrinkage

    classes, y = np.unique(labels, return_inverse=True)
    x64 = np.asarray(x, np.float64)
    n, d = x64.shape
    priors = np.bincount(y, minlength=len(classes)) / n
    means = np.stack([x64[y == k].mean(axis=0) for k in range(len(classes))])
    diagonal = np.zeros(d)
    blocks = []
    for k in range(len(classes)):
        xk = x64[y == k] - means[k]
        sd = xk.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)  # scikit-learn's StandardScaler keeps constant columns
        zk = xk / sd
        shrink = float(ledoit_wolf_shrinkage(zk, assume_centered=True))
        mu = float(np.sum(zk * zk)) / (len(zk) * d)
        diagonal += priors[k] * shrink * mu * sd**2
        blocks.append(np.sqrt(priors[k] * (1.0 - shrink) / len(zk)) * (zk * sd).T)
    u = np.hstack(blocks)  # (d, n)
    rhs = means.T
    if n < d // 2 and diagonal.min() > 1e-12 * max(diagonal.max(), 1e-300):
        scaled_u = u / diagonal[:, None]
        small = np.eye(u.shape[1]) + u.T @ scaled_u
        solved = rhs / diagonal[:, None]
        solved -= scaled_u @ linalg.solve(small, u.T @ solved, assume_a="pos")
        coef = solved.T
    else:
        cov = u @ u.T
        cov.flat[:: d + 1] += diagonal
        try:
            coef = linalg.cho_solve(linalg.cho_factor(cov), rhs).T
        except linalg.LinAlgError:  # singular: e.g. no shrinkage and a constant feature
            coef = linalg.lstsq(cov, rhs)[0].T
    intercept = -0.5 * np.sum(means * coef, axis=1) + np.log(priors)
    if len(classes) == 2:
        coef, intercept = coef[1:] - coef[:1], intercept[1:] - intercept[:1]
    return classes, coef, intercept


@dataclass
class LinearHead:
    """Class probabilities ``softmax(((x - mean) / scale) @ coef.T + intercept)``.

    Parameters
    ----------
    classes : list of str
        Class order of the columns.
    mean, scale : ndarray
        ``(d,)`` standardisation fitted on the training vectors.
    coef : ndarray
        ``(C, d)`` (``(1, d)`` for two classes: the second class's logit).
    intercept : ndarray
        ``(C,)`` (``(1,)`` for two classes).
    """

    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    kind: str = "lda"

    @classmethod
    def fit(cls, x: np.ndarray, labels: Sequence[str], kind: str = "lda") -> LinearHead:
        """Fit a head on standardised vectors.

        Parameters
        ----------
        x : ndarray
            ``(n, d)`` training vectors.
        labels : sequence of str
            ``n`` labels, at least two classes.
        kind : {"lda", "logistic"}
            Shrinkage LDA (``solver="lsqr", shrinkage="auto"``, on at most
            :data:`LDA_MAX_TRAIN` cells) or L2 logistic regression (on at most
            :data:`LOGISTIC_MAX_TRAIN` cells).
        """
        import warnings

        from sklearn.linear_model import LogisticRegression

        if kind not in HEADS:
            raise ValueError(f"unknown head {kind!r}; choose from {HEADS}")
        x = np.asarray(x)
        labels = np.asarray(labels, dtype=object).astype(str)
        rows = stratified_cap(labels, LOGISTIC_MAX_TRAIN if kind == "logistic" else LDA_MAX_TRAIN)
        x, labels = x[rows], labels[rows]
        # statistics in float64; the fit itself in float32 (the vectors' own precision), which
        # scikit-learn keeps: 30 % faster at 20,000 cells, coefficients equal to ~1e-6
        mean = x.mean(axis=0, dtype=np.float64)
        scale = x.std(axis=0, dtype=np.float64)
        scale = np.where(scale > 1e-9, scale, 1.0)
        z = ((x - mean) / scale).astype(np.float32)
        with warnings.catch_warnings():  # classes with one cell; a slow convergence
            warnings.simplefilter("ignore")
            if kind == "lda":
                classes, coef, intercept = shrinkage_lda(z, labels)
            else:
                model = LogisticRegression(max_iter=1000).fit(z, labels)
                classes, coef, intercept = model.classes_, model.coef_, model.intercept_
        return cls([str(c) for c in classes], mean.astype(np.float32),
                   scale.astype(np.float32), np.atleast_2d(coef).astype(np.float32),
                   np.atleast_1d(intercept).astype(np.float32), kind)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(n, C)`` class scores."""
        z = (np.asarray(x, np.float32) - self.mean) / self.scale
        raw = z @ self.coef.T + self.intercept
        if len(self.classes) == 2 and raw.shape[1] == 1:
            raw = np.concatenate([np.zeros_like(raw), raw], axis=1)
        return raw

    def proba(self, x: np.ndarray, classes: Sequence[str] | None = None) -> np.ndarray:
        """``(n, C)`` class probabilities, columns in ``classes`` order (0 for unknown ones)."""
        raw = self.logits(x).astype(np.float64)
        raw -= raw.max(axis=1, keepdims=True)
        p = np.exp(raw)
        p /= p.sum(axis=1, keepdims=True)
        if classes is None:
            return p
        out = np.zeros((p.shape[0], len(classes)))
        col = {c: i for i, c in enumerate(self.classes)}
        for j, c in enumerate(classes):
            if c in col:
                out[:, j] = p[:, col[c]]
        return out
