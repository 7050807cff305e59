"""Every default of cellseek, stated once, in frozen dataclasses.

The CLI, the napari widgets and the library all read their defaults from here. Use
:func:`dataclasses.replace` to change a field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Environment variable naming a local folder of model weights (air-gapped labs).
WEIGHTS_DIR_ENV = "CELLSEEK_WEIGHTS_DIR"
#: Environment variable naming the cache folder (SAM image embeddings, ...).
CACHE_DIR_ENV = "CELLSEEK_CACHE_DIR"


def default_cache_dir() -> Path:
    """Folder for caches: ``$CELLSEEK_CACHE_DIR`` or ``~/.cache/cellseek``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "cellseek"


def default_weights_dir() -> Path | None:
    """Local weights folder from ``$CELLSEEK_WEIGHTS_DIR``, or None."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env) if env else None


@dataclass(frozen=True)
class SegmentConfig:
    """How cells are segmented.

    Parameters
    ----------
    method : {"auto", "sam", "classical"}
        ``"auto"`` uses SAM when its weights are present, else the classical segmenter.
    sam_model : str
        SAM variant (``vit_b``, ``vit_l``, ``vit_h``).
    min_area, max_area : int
        Objects outside this pixel-area range are dropped (``max_area`` 0 = no limit).
    exclude_border : bool
        Drop objects touching the image border.
    stain : {"auto", "stained", "label-free", "qpi", "brightfield", "phase-contrast"}
        For the classical segmenter, the image modality: stained smears use a stain channel that
        separates nuclei; label-free planes are thresholded on their departure from the
        background, by modality (``"label-free"`` and ``"auto"`` detect it; see
        :mod:`cellseek.segment.modality`).
    target : {"auto", "wbc", "cells"}
        For the classical segmenter: ``"wbc"`` keeps nucleated cells only (white blood cells of
        a smear), ``"cells"`` every cell; ``"auto"`` is ``"wbc"`` on stained planes and
        ``"cells"`` on label-free ones.
    """

    method: str = "auto"
    sam_model: str = "vit_b"
    min_area: int = 150
    max_area: int = 0
    exclude_border: bool = False
    stain: str = "auto"
    target: str = "auto"
    sam_points_per_side: int = 32
    sam_tile_size: int = 1024
    sam_tile_overlap: int = 128


@dataclass(frozen=True)
class CropConfig:
    """How a crop is cut around each cell.

    Parameters
    ----------
    margin : float
        Context margin around the bounding box, as a fraction of its longer side.
    mask_mode : {"context", "mask"}
        Keep the surrounding pixels, or set everything outside the cell mask to the background.
    size : int
        Side of the square crop handed to embedders before their own resize.
    target_pixel_size_um : float or None
        Resample crops to this pixel size when the image's pixel size is known.
    """

    margin: float = 0.25
    mask_mode: str = "context"
    size: int = 128
    target_pixel_size_um: float | None = None


@dataclass(frozen=True)
class EmbedConfig:
    """Which models embed the crops, and how.

    Parameters
    ----------
    preset : str
        A preset name from :data:`cellseek.zoo.registry.PRESETS`; ignored when ``models`` is set.
    models : tuple of str
        Explicit model names.
    batch_size : int
        Crops per forward pass.
    device : str
        ``"auto"`` (GPU when available), ``"cpu"``, ``"cuda"``, ``"mps"``.
    weights_dir : str or None
        Local weights folder; defaults to ``$CELLSEEK_WEIGHTS_DIR``.
    """

    preset: str = "offline"
    models: tuple[str, ...] = ()
    batch_size: int = 32
    device: str = "auto"
    weights_dir: str | None = None


@dataclass(frozen=True)
class WeightingConfig:
    """Entropy-guided model weights (see ``docs/method.md``).

    Parameters
    ----------
    mode : {"uniform", "global_entropy", "per_query_entropy"}
        ``per_query_entropy`` needs one search per model; ``cellseek evaluate`` measures it,
        while a session's fused index uses the global weights for it.
    k : int
        Neighbours per reference cell when measuring label entropy.
    tau : float
        Temperature of ``softmax(-H_m / tau)``.
    """

    mode: str = "global_entropy"
    k: int = 10
    tau: float = 0.1


@dataclass(frozen=True)
class AlignConfig:
    """Removal of source-specific offsets before the search (cross-device suggestions).

    Parameters
    ----------
    method : {"none", "balanced"}
        ``"balanced"`` subtracts from every model's embedding the class-balanced mean of the
        cell's source (device / dataset / batch): the mean of its class means, a class being the
        confirmed label or else the current suggestion. Recomputed at every suggestion run.
    min_count : int
        Classes with fewer cells in a source are ignored in its mean.
    iterations : int
        Suggestion passes per run (the second pass uses the first pass's suggestions).
    """

    method: str = "balanced"
    min_count: int = 3
    iterations: int = 2


@dataclass(frozen=True)
class IndexConfig:
    """The FAISS index; its type follows the size (see ``docs/scaling.md``).

    Parameters
    ----------
    exact_max : int
        Up to this many reference cells the search is exact (flat inner product).
    hnsw_m : int
        HNSW graph degree beyond ``exact_max``.
    hnsw_ef_search, hnsw_ef_construction : int
        HNSW search / construction breadth.
    ivf_min : int
        Beyond this many cells the index is IVF-PQ (inverted lists of product-quantised codes,
        re-ranked), which builds faster and needs a fraction of the memory of HNSW.
    ivf_nlist : int
        Inverted lists; 0 picks a power of two near ``4 * sqrt(n)`` (4096 for a million).
    ivf_nprobe : int
        Lists visited per query (more: better recall, slower).
    ivf_pq_m : int
        Sub-quantisers per vector (bytes per code at 8 bits); the largest divisor of the
        dimension not above this value is used.
    ivf_pq_nbits : int
        Bits per sub-quantiser code (lowered automatically for small training sets).
    ivf_refine : {"sq8", "flat", "none"}
        Re-rank the IVF-PQ candidates with 8-bit scalar-quantised vectors (1 byte per dim),
        the exact float32 vectors (4 bytes per dim), or not at all.
    ivf_refine_k_factor : int
        Candidates re-ranked per requested neighbour.
    ivf_train_size : int
        Vectors sampled to train the IVF-PQ (at least 39 per list are used when available).
    compact_fraction : float
        HNSW and IVF-PQ mark removed cells and skip them at search; the index is rebuilt
        without them once they exceed this fraction of its size.
    pca_components : int
        0 (default): index the full fused vector. Otherwise each model's embedding is projected
        on its leading principal components (fitted on the reference cells whenever the index is
        built; :mod:`cellseek.search.reduce`) before fusion, so the index holds at most
        ``pca_components`` dims per model: less memory and faster search for very large sets.
    """

    exact_max: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    hnsw_ef_construction: int = 200
    ivf_min: int = 200_000
    ivf_nlist: int = 0
    ivf_nprobe: int = 32
    ivf_pq_m: int = 64
    ivf_pq_nbits: int = 8
    ivf_refine: str = "sq8"
    ivf_refine_k_factor: int = 8
    ivf_train_size: int = 100_000
    compact_fraction: float = 0.1
    pca_components: int = 0


@dataclass(frozen=True)
class SuggestConfig:
    """Adaptive kNN vote.

    Parameters
    ----------
    k_min, k_max : int
        Bounds on the adaptive k. ``k_min`` = 3 keeps confidences graded (with k = 1 every
        suggestion has confidence 1 and the review queue cannot rank cells).
    threshold : float
        Suggestions with a confidence below this abstain ("uncertain").
    temperature : float
        Vote weight of a neighbour is ``exp((s - s_top) / temperature)`` where s is its
        similarity and s_top the best one; large values give a plain majority vote.
    """

    k_min: int = 3
    k_max: int = 15
    threshold: float = 0.6
    temperature: float = 0.05


@dataclass(frozen=True)
class Config:
    """All settings of a cellseek session."""

    segment: SegmentConfig = field(default_factory=SegmentConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    suggest: SuggestConfig = field(default_factory=SuggestConfig)
