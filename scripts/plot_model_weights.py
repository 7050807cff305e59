"""Plot the entropy weights each evaluation set gives the models of a preset.

The weights are :func:`cellseek.search.suggester.compute_weights` of each set's labelled cells
(the suggester's own global weights), from embeddings that ``cellseek evaluate`` cached, or from
``.npz`` files with one array per model plus ``labels``.

Usage::

    PYTHONPATH=src python scripts/plot_model_weights.py OUT.png NAME=FILE.npz [NAME=FILE.npz ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def weights_of(path: Path) -> dict[str, float]:
    """The suggester's global weights of the models in one ``.npz`` (arrays + ``labels``)."""
    from cellseek.config import Config
    from cellseek.measure.scoring import eval_set
    from cellseek.search.suggester import compute_weights

    data = np.load(path, allow_pickle=False)
    labels = [str(v) for v in data["labels"]]
    embs = {k: np.asarray(data[k], np.float32) for k in data.files if k != "labels"}
    cells = eval_set(path.stem, embs, labels, ["one"] * len(labels))
    return compute_weights(cells, Config())


def main(argv: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, pairs = Path(argv[0]), [a.split("=", 1) for a in argv[1:]]
    table = {name: weights_of(Path(file)) for name, file in pairs}
    models = sorted({m for w in table.values() for m in w})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = np.arange(len(table))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        vals = [table[s].get(m, 0.0) for s in table]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=m)
        for xi, v in zip(x, vals):
            print(f"{list(table)[xi]:<12} {m:<18} {v:.3f}")
    ax.set_xticks(x, list(table))
    ax.set_ylabel("global entropy weight")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Model weights each set chose (packaged preset)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
