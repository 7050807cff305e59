"""Simulated annotation loop: how fast does macro accuracy grow with confirmed cells?

Half of a labelled set (stratified) is held out for testing; the other half is the pool of cells
the "user" annotates. The loop starts from ``n`` labelled cells per class and then confirms
``step`` cells at a time, either in the order of the review queue (the least confident
suggestions first, as the widget presents them) or in random order, measuring the macro
accuracy on the held-out half after every step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from cellseek.config import Config
from cellseek.measure.scoring import knn_predict, macro_accuracy, stratified_folds, vote_shares
from cellseek.search.cellset import CellSet
from cellseek.text import count_text
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)


def simulate_growth(
    data: CellSet,
    *,
    start_per_class: Sequence[int] = (1, 5, 20),
    step: int = 10,
    max_added: int = 200,
    config: Config | None = None,
    seed: int = 0,
) -> Work[dict]:
    """Run the simulated loop for every start size, in review-queue and random order.

    Returns
    -------
    dict
        ``curves``: list of ``{"start_per_class", "order", "n_labelled": [...],
        "macro_accuracy": [...]}``; ``n_test``, ``n_pool``.
    """
    config = config or Config()
    fold = stratified_folds(data.labels, 2, seed)
    test, pool_all = np.flatnonzero(fold == 0), np.flatnonzero(fold == 1)
    test_set = data.subset(test)
    labels = np.asarray(data.labels, dtype=object)
    curves = []
    total = len(start_per_class) * 2 * (max_added // step + 1)
    done = 0
    for n0 in start_per_class:
        rng = np.random.default_rng(seed + n0)
        start = np.concatenate([
            rng.permutation(pool_all[labels[pool_all] == c])[:n0]
            for c in sorted(set(labels.tolist()))
        ])
        for order in ("review queue", "random"):
            labelled = start.copy()
            pool = np.setdiff1d(pool_all, labelled)
            order_rng = np.random.default_rng(seed + 1000 + n0)
            xs, ys = [], []
            for _ in range(max_added // step + 1):
                pred, _ = knn_predict(data.subset(labelled), test_set, config=config)
                xs.append(len(labelled))
                ys.append(macro_accuracy(test_set.labels, pred)[0])
                done += 1
                yield Progress(done, total, "growth", f"start {n0}/class, {order}")
                if len(pool) == 0:
                    break
                if order == "random":
                    pick = order_rng.choice(len(pool), min(step, len(pool)), replace=False)
                else:
                    shares, _, _ = vote_shares(data.subset(labelled), data.subset(pool),
                                               config=config)
                    conf = shares.max(axis=1)
                    pick = np.argsort(conf, kind="stable")[:step]
                labelled = np.concatenate([labelled, pool[pick]])
                pool = np.delete(pool, pick)
            curves.append({"start_per_class": int(n0), "order": order,
                           "n_labelled": xs, "macro_accuracy": ys})
    return {"curves": curves, "n_test": int(len(test)), "n_pool": int(len(pool_all)),
            "dataset": data.name, "models": list(data.embeddings), "step": step}


def plot_growth(result: dict, path) -> None:
    """Macro accuracy against confirmed cells, one panel per start size."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    starts = sorted({c["start_per_class"] for c in result["curves"]})
    fig, axes = plt.subplots(1, len(starts), figsize=(4.2 * len(starts), 3.6), sharey=True,
                             squeeze=False)
    for ax, n0 in zip(axes[0], starts):
        for c in result["curves"]:
            if c["start_per_class"] != n0:
                continue
            style = "-" if c["order"] == "review queue" else "--"
            ax.plot(c["n_labelled"], 100 * np.asarray(c["macro_accuracy"]), style,
                    label=c["order"])
        ax.set_title(f"start: {count_text(n0, 'labelled cell')} per class", fontsize=10)
        ax.set_xlabel("confirmed reference cells")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("macro accuracy on held-out cells (%)")
    axes[0][0].legend()
    fig.suptitle(f"Annotation loop simulation: {result['dataset']} "
                 f"({', '.join(result['models'])}; "
                 f"{count_text(result['n_test'], 'test cell')})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
