"""Is a confident suggestion right? Coverage, precision above the threshold, reliability.

A suggestion at or above the confidence threshold is shown as a label ("covered"); below it the
cell is "uncertain" and comes first in the review queue. What a user needs to know is how many
cells get a label (coverage) and how often such a label is right (precision), and whether the
confidence means what it says (the reliability diagram: accuracy per confidence bin).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def coverage_precision(truth: Sequence[str], best: Sequence[str | None],
                       confidence: Sequence[float], threshold: float) -> dict:
    """Coverage and precision of the suggestions at or above ``threshold``.

    Returns
    -------
    dict
        ``threshold``, ``coverage`` (fraction of cells with a label), ``precision`` (fraction
        of those that are right; NaN when none), ``n_covered``, ``n``.
    """
    truth = np.asarray(truth, dtype=object)
    best = np.asarray(best, dtype=object)
    conf = np.asarray(confidence, np.float64)
    covered = conf >= threshold
    right = best == truth
    return {"threshold": float(threshold), "coverage": float(covered.mean()) if len(conf) else 0.0,
            "precision": float(right[covered].mean()) if covered.any() else float("nan"),
            "n_covered": int(covered.sum()), "n": int(len(conf))}


def reliability(truth: Sequence[str], best: Sequence[str | None],
                confidence: Sequence[float], bins: int = 10) -> list[dict]:
    """Accuracy and mean confidence per confidence bin (``[i/bins, (i+1)/bins)``).

    Returns
    -------
    list of dict
        ``low``, ``high``, ``n``, ``accuracy`` (NaN when empty), ``mean_confidence``.
    """
    truth = np.asarray(truth, dtype=object)
    right = np.asarray(best, dtype=object) == truth
    conf = np.asarray(confidence, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=False), 0, bins - 1)
    rows = []
    for i in range(bins):
        sel = which == i
        rows.append({"low": float(edges[i]), "high": float(edges[i + 1]), "n": int(sel.sum()),
                     "accuracy": float(right[sel].mean()) if sel.any() else float("nan"),
                     "mean_confidence": float(conf[sel].mean()) if sel.any() else float("nan")})
    return rows


def plot_reliability(panels: dict[str, list[dict]], path, threshold: float | None = None) -> None:
    """One reliability diagram per panel (title -> :func:`reliability` rows), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels.items()):
        mids = [(r["low"] + r["high"]) / 2 for r in rows if r["n"]]
        acc = [r["accuracy"] for r in rows if r["n"]]
        n = [r["n"] for r in rows if r["n"]]
        ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
        ax.bar(mids, acc, width=0.09, alpha=0.7, label="accuracy per bin")
        for x, y, k in zip(mids, acc, n):
            ax.text(x, min(y + 0.02, 0.98), str(k), ha="center", fontsize=7)
        if threshold is not None:
            ax.axvline(threshold, color="crimson", lw=1, label=f"threshold {threshold:.2f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(title, fontsize=9)
    axes[0][0].set_ylabel("fraction right (cells per bin above bars)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
