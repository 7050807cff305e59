"""Every default of cellseek, stated once, in frozen dataclasses.

The CLI, the napari widgets and the library all read their defaults from here. Use
:func:`dataclasses.replace` to change a field.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from cellseek.errors import ConfigError

#: Environment variable naming a local folder of model weights (air-gapped labs).
WEIGHTS_DIR_ENV = "CELLSEEK_WEIGHTS_DIR"
#: Environment variable naming the cache folder (SAM image embeddings, ...).
CACHE_DIR_ENV = "CELLSEEK_CACHE_DIR"
#: Environment variable overriding :attr:`Limits.max_plane_pixels` (an integer).
MAX_PLANE_PIXELS_ENV = "CELLSEEK_MAX_PLANE_PIXELS"
#: Environment variable naming the model preset of new reference sets (default
#: :data:`DEFAULT_PRESET`; ``light`` for slow machines).
PRESET_ENV = "CELLSEEK_PRESET"
#: The preset of new reference sets: ``classical`` plus the pretrained models whose weights
#: install with ``pip`` (:data:`cellseek.zoo.registry.PRESETS`).
DEFAULT_PRESET = "packaged"


def env_path(name: str, *, folder: bool) -> Path | None:
    """The path an environment variable names (``~`` expanded); None when unset or blank.

    Parameters
    ----------
    name : str
        The variable.
    folder : bool
        Whether it names a folder (else a file). It need not exist yet.

    Raises
    ------
    ConfigError
        It names something that exists but is not a folder (a file, when ``folder`` is False).
    """
    env = os.environ.get(name, "")
    if not env.strip():
        return None
    path = Path(env).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(name, env, "this is not a folder; a folder is expected (or unset it)")
    if not folder and path.is_dir():
        raise ConfigError(name, env, "this is a folder; a file path is expected (or unset it)")
    return path


def default_cache_dir() -> Path:
    """Folder for caches: ``$CELLSEEK_CACHE_DIR`` or ``~/.cache/cellseek``."""
    return env_path(CACHE_DIR_ENV, folder=True) or Path.home() / ".cache" / "cellseek"


def default_preset() -> str:
    """The preset of new reference sets: ``$CELLSEEK_PRESET``, else :data:`DEFAULT_PRESET`.

    Raises
    ------
    ConfigError
        The variable is set to something that cannot be a preset name.
    """
    env = os.environ.get(PRESET_ENV)
    if env is None or not env.strip():
        return DEFAULT_PRESET
    name = env.strip()
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(PRESET_ENV, env, "a preset name such as packaged or light")
    return name


def default_weights_dir() -> Path | None:
    """Local weights folder from ``$CELLSEEK_WEIGHTS_DIR``, or None."""
    return env_path(WEIGHTS_DIR_ENV, folder=True)


@dataclass(frozen=True)
class SegmentConfig:
    """How cells are segmented.

    Parameters
    ----------
    method : {"auto", "sam", "classical"}
        ``"auto"`` uses SAM when its weights are present, else the classical segmenter.
    sam_model : str
        ``"auto"``: the best SAM model whose weights are on this machine for the device
        (:func:`cellseek.zoo.sam_choice.choose_sam_model`: MobileSAM-class ``vit_t_lm``/``vit_t``
        first on a CPU, ``vit_b_lm``/``vit_l_lm``/ViT-H first on a GPU); or a name of
        :data:`cellseek.zoo.sam_loader.SAM_MODELS` (``vit_t``, ``vit_b_lm``, ``vit_b``, ...).
    sam_auto_mode : {"auto", "decoder", "seeds", "grid"}
        How SAM segments a whole plane: micro-sam's instance decoder, classical seeds decoded by
        SAM, or SAM's prompt grid (slow on a CPU); ``"auto"``: the decoder when the model has one,
        else seeds.
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
    sam_model: str = "auto"
    sam_auto_mode: str = "auto"
    min_area: int = 150
    max_area: int = 0
    exclude_border: bool = False
    stain: str = "auto"
    target: str = "auto"
    #: SAM's prompt grid per tile side (``sam_auto_mode="grid"``).
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


#: Crop masking modes :class:`CropConfig` accepts.
MASK_MODES = ("context", "mask")


def check_crop_config(crop: CropConfig, limits: Limits | None = None) -> CropConfig:
    """Return ``crop`` when every field is in range, else raise ``ValueError`` saying which.

    Crop settings also come from reference stores made elsewhere: a crop size of 10**6 would
    allocate terabytes, so sizes are bounded by :attr:`Limits.max_crop_size`.
    """
    limits = limits or current_limits()
    if not isinstance(crop.size, int) or isinstance(crop.size, bool) or not (
        8 <= crop.size <= limits.max_crop_size
    ):
        raise ValueError(f"crop size must be an integer from 8 to {limits.max_crop_size}, "
                         f"not {crop.size!r}")
    if not isinstance(crop.margin, int | float) or not (0.0 <= float(crop.margin) <= 10.0):
        raise ValueError(f"crop margin must be a number from 0 to 10, not {crop.margin!r}")
    if crop.mask_mode not in MASK_MODES:
        raise ValueError(f"crop mask_mode must be one of {MASK_MODES}, not {crop.mask_mode!r}")
    target = crop.target_pixel_size_um
    if target is not None and (
        not isinstance(target, int | float) or not math.isfinite(target) or target <= 0
    ):
        raise ValueError(f"crop target_pixel_size_um must be a positive number or None, "
                         f"not {target!r}")
    return crop


@dataclass(frozen=True)
class EmbedConfig:
    """Which models embed the crops, and how.

    Parameters
    ----------
    preset : str
        A preset name from :data:`cellseek.zoo.registry.PRESETS`; ignored when ``models`` is set.
        Default: ``$CELLSEEK_PRESET``, else :data:`DEFAULT_PRESET`.
    models : tuple of str
        Explicit model names.
    batch_size : int
        Crops per forward pass.
    device : str
        ``"auto"`` (GPU when available), ``"cpu"``, ``"cuda"``, ``"mps"``.
    weights_dir : str or None
        Local weights folder; defaults to ``$CELLSEEK_WEIGHTS_DIR``.
    """

    preset: str = field(default_factory=default_preset)
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
        ``per_query_entropy`` weights each model's own vote per query by the entropy of that
        model's neighbours (one exact search per model); the fused index still gives the
        neighbours shown.
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
    method : {"none", "balanced", "center", "center_scale", "coral"}
        ``"balanced"`` subtracts from every model's embedding the class-balanced mean of the
        cell's source (device / dataset / batch): the mean of its class means, a class being the
        confirmed label or else the current suggestion. Recomputed at every suggestion run.
        ``"center"``, ``"center_scale"`` and ``"coral"`` are unsupervised per-source statistics
        (:mod:`cellseek.search.align`), kept for comparison in ``cellseek evaluate``.
    min_count : int
        Classes with fewer cells in a source are ignored in its mean.
    iterations : int
        Suggestion passes per run: the first aligns a source without confirmed cells on its
        plain mean, every later pass on the class-balanced mean of the previous pass's
        suggestions. 3 measured best on the classical embedder (PBC -> BCCD crops 61.5 / 64.0 /
        67.2 / 67.4 % macro accuracy with 1 / 2 / 3 / 4 passes; docs/benchmarks.md).
    """

    method: str = "balanced"
    min_count: int = 3
    iterations: int = 3


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
        0 (default): index the full fused vector. Otherwise each model wider than this many
        dims is projected on its leading principal components (fitted on the reference cells
        whenever the index is built, at most one fewer than their count;
        :mod:`cellseek.search.reduce`) before fusion; narrower models (the 227 classical
        features) pass through. 256 turns the default preset's 2,275 dims into 739: the learned
        head's refit at 5,000 confirmed cells takes 0.13 s instead of 3.6 s, at a cost of up to
        0.8 points on the label-free sets (docs/benchmarks.md), so it is an option for large
        reference sets, not the default.
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
class LearnConfig:
    """What the suggester learns from the confirmed cells beyond the kNN vote.

    Parameters
    ----------
    head : {"auto", "off", "on"}
        ``"auto"``: a head learned from the confirmed cells (:mod:`cellseek.search.head`:
        shrinkage LDA or logistic regression) is used, alone or blended with the kNN vote, for
        the sources where it is validated on confirmed cells (:mod:`cellseek.search.choice`);
        other sources keep the kNN vote. ``"off"``: kNN only. ``"on"``: the LDA blend
        everywhere, unvalidated.
    min_per_class : int
        A source is validated on its own confirmed cells when at least two classes have this
        many of them.
    folds : int
        In-source validation folds (fewer when a class has fewer cells).
    margin : float
        A less robust predictor (blend over kNN, head over blend) must beat the more robust
        one by this much validated macro accuracy to be chosen.
    max_train : int
        At most this many confirmed cells (a class-stratified sample) train the head and
        measure the familiarity.
    familiarity : bool
        Scale confidences by how near a cell's neighbours are, relative to the reference set's
        own spacing (:mod:`cellseek.search.familiarity`): cells unlike anything confirmed become
        uncertain.
    familiarity_quantile : float
        The low quantile of the same-class nearest-neighbour similarity below which the
        familiarity starts to fall.
    robust_models : tuple of str
        The models of the *robust* search profile (:mod:`cellseek.search.profiles`): a source
        that nothing validates yet (a new microscope) is searched with these alone, with equal
        weights; validation per source decides when all models help. Models absent from a set
        are ignored; with none present (or all of them) there is one profile only.
    """

    head: str = "auto"
    min_per_class: int = 3
    folds: int = 5
    margin: float = 0.01
    max_train: int = 20_000
    familiarity: bool = True
    familiarity_quantile: float = 0.05
    robust_models: tuple[str, ...] = ("classical",)


@dataclass(frozen=True)
class Limits:
    """Bounds on every size read from an image file or a reference store (memory bombs).

    A 1.5 MB TIFF can declare a 1.6 GB plane, a 3 MB zlib blob can inflate to 3 GB and a store
    made elsewhere can state any crop size: cellseek refuses such input with a clear error
    instead of trying to allocate it.

    Parameters
    ----------
    max_plane_pixels : int
        Pixels (rows x columns) of one image plane or label image; about 16384 x 16384 by
        default. Set ``$CELLSEEK_MAX_PLANE_PIXELS`` to raise it for very large montages.
    max_crop_size : int
        Largest :attr:`CropConfig.size` a store may ask for.
    max_crop_window : int
        Largest side, in image pixels, of the window a crop is cut from: the crop pixel size
        (``target_pixel_size_um``, also saved in stores) over the image's pixel size (from its
        file) times the crop size.
    max_embedding_dim : int
        Largest embedding size of a model in a store.
    max_thumbnail_bytes : int
        Largest stored thumbnail (encoded bytes).
    max_thumbnail_side : int
        Largest width or height a stored thumbnail may declare.
    max_meta_bytes : int
        Largest JSON value of a store's ``meta`` table.
    max_text_bytes : int
        Longest class label, suggestion, path, source or note of a store, in UTF-8 bytes
        (the same rule when cellseek writes one and when it reads a store made elsewhere:
        :mod:`cellseek.store.rules`).
    """

    max_plane_pixels: int = 1 << 28
    max_crop_size: int = 1024
    max_crop_window: int = 4096
    max_embedding_dim: int = 1 << 16
    max_thumbnail_bytes: int = 1 << 20
    max_thumbnail_side: int = 1024
    max_meta_bytes: int = 1 << 20
    max_text_bytes: int = 4096


def current_limits() -> Limits:
    """The :class:`Limits` in force: the defaults, with ``$CELLSEEK_MAX_PLANE_PIXELS`` applied.

    Raises
    ------
    ConfigError
        ``$CELLSEEK_MAX_PLANE_PIXELS`` is set to anything but a positive whole number.
    """
    env = os.environ.get(MAX_PLANE_PIXELS_ENV, "")
    if not env.strip():
        return Limits()
    try:
        value = int(env.strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(MAX_PLANE_PIXELS_ENV, env,
                          "a positive whole number of pixels (rows x columns) is expected, "
                          f"e.g. {Limits().max_plane_pixels} (the default, used when unset)")
    return Limits(max_plane_pixels=value)


def check_environment() -> None:
    """Check every ``CELLSEEK_*`` environment variable this module reads.

    Raises
    ------
    ConfigError
        One line naming the first malformed variable, its value and what is expected.
    """
    current_limits()
    default_cache_dir()
    default_weights_dir()
    default_preset()


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
    learn: LearnConfig = field(default_factory=LearnConfig)
