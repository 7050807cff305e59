"""A linear head learned from the confirmed cells: shrinkage LDA on the suggester's vectors.

Foundation-model and hand-crafted embeddings carry many directions that do not matter for the
user's classes. Linear discriminant analysis with Ledoit-Wolf shrinkage (scikit-learn) learns,
from the confirmed cells alone, which directions separate them; it fits in closed form (no
iterations), so it refits in milliseconds when labels change, and it stays usable with a handful
of cells per class (shrinkage). Whether the head is used for a source is decided by
:mod:`cellseek.search.choice`: it can learn the reference device as much as the classes.

The fitted head is kept as plain arrays (standardisation, coefficients, intercepts, classes), so
it can be saved with the store and evaluated with NumPy alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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

    @classmethod
    def fit(cls, x: np.ndarray, labels: Sequence[str]) -> LinearHead:
        """Fit shrinkage LDA (``solver="lsqr", shrinkage="auto"``) on standardised vectors.

        Parameters
        ----------
        x : ndarray
            ``(n, d)`` training vectors.
        labels : sequence of str
            ``n`` labels, at least two classes.
        """
        import warnings

        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        x = np.asarray(x, np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        with warnings.catch_warnings():  # classes with one cell: fine with shrinkage
            warnings.simplefilter("ignore", UserWarning)
            lda.fit((x - mean) / scale, np.asarray(labels, dtype=object).astype(str))
        return cls([str(c) for c in lda.classes_], mean.astype(np.float32),
                   scale.astype(np.float32), np.atleast_2d(lda.coef_).astype(np.float32),
                   np.atleast_1d(lda.intercept_).astype(np.float32))

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
