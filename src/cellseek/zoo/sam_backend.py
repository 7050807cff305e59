"""Segment Anything (SAM): finding and loading the checkpoints, and the SAM cell embedder.

Weights are never downloaded here. :func:`sam_checkpoint_path` looks for the official checkpoint
files (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``, ``sam_vit_h_4b8939.pth``) in

1. the local weights folder (``weights_dir``, else ``$CELLSEEK_WEIGHTS_DIR``), as
   ``<dir>/<file>`` or ``<dir>/sam_vit_b/<file>``;
2. torch hub's checkpoint folder (``torch.hub.get_dir()/checkpoints``, where
   ``cellseek models pull sam_vit_b`` and SAM's own instructions put them);
3. ``~/.cache/cellseek/sam``.

:func:`load_sam` reads the checkpoint, infers the encoder's layout from it (width, depth, heads,
global-attention blocks, native input size), builds the architecture (through
``segment_anything.sam_model_registry`` for an official checkpoint at its native 1024 px) and
loads the weights. An input size other than the checkpoint's is supported: the absolute position
embedding and the relative position tables of the global-attention blocks are interpolated, so
SAM can run at 512 px on a CPU (4x fewer tokens than at 1024 px). Loaded models are cached per
process.

:func:`build` is the zoo factory (``cellseek.zoo.sam_backend:build``): the embedder runs SAM's
image encoder on each crop and averages the ``(256, h, w)`` feature map inside the cell's mask.

torch and segment_anything are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np

from cellseek.config import WEIGHTS_DIR_ENV, default_weights_dir
from cellseek.errors import CellseekError, MissingWeightsError
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.weights import torch_hub_dir

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINTS",
    "SamEmbedder",
    "build",
    "build_sam_model",
    "clear_model_cache",
    "load_sam",
    "sam_checkpoint_path",
    "sam_weights_available",
    "weights_fingerprint",
]

#: Official checkpoint file per SAM variant.
CHECKPOINTS = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
#: Where the official checkpoints are published.
URL_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"
#: Image-encoder layouts of the official variants (``segment_anything/build_sam.py``).
OFFICIAL_LAYOUTS = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
#: SAM's fixed choices: patch size, window size, prompt embedding width, native input size.
PATCH_SIZE = 16
WINDOW_SIZE = 14
PROMPT_DIM = 256
NATIVE_SIZE = 1024
#: SAM's pixel normalisation, on the 0-255 scale.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

_MODELS: dict[tuple, object] = {}
_MODELS_LOCK = threading.Lock()
_FINGERPRINTS: dict[tuple, str] = {}


# -- finding the weights ---------------------------------------------------------------------
def _model_type(model_type: str) -> str:
    name = str(model_type).lower().removeprefix("sam_")
    if name == "default":
        name = "vit_h"
    if name not in CHECKPOINTS:
        raise CellseekError(
            f"unknown SAM model {model_type!r}; choose one of {', '.join(CHECKPOINTS)}"
        )
    return name


def _search_dirs(model_type: str, weights_dir=None) -> list[Path]:
    dirs = []
    local = Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()
    if local is not None:
        dirs += [local, local / f"sam_{model_type}"]
    dirs.append(torch_hub_dir() / "checkpoints")
    dirs.append(Path.home() / ".cache" / "cellseek" / "sam")
    return dirs


def sam_checkpoint_path(model_type: str = "vit_b", *, weights_dir=None) -> Path | None:
    """The official SAM checkpoint on this machine, or None (never downloads).

    Parameters
    ----------
    model_type : {"vit_b", "vit_l", "vit_h"}
        SAM variant (``"sam_vit_b"`` is accepted too).
    weights_dir : path-like, optional
        Local weights folder; default ``$CELLSEEK_WEIGHTS_DIR``. Searched as ``<dir>/<file>`` and
        ``<dir>/sam_<type>/<file>``, before torch hub's checkpoints and ``~/.cache/cellseek/sam``.

    Returns
    -------
    Path or None
    """
    model_type = _model_type(model_type)
    filename = CHECKPOINTS[model_type]
    for folder in _search_dirs(model_type, weights_dir):
        path = folder / filename
        if path.is_file():
            return path
    return None


def sam_weights_available(model_type: str = "vit_b", weights_dir=None) -> bool:
    """Whether the SAM checkpoint is on this machine (a file lookup, no model build)."""
    return sam_checkpoint_path(model_type, weights_dir=weights_dir) is not None


def missing_weights_hint(model_type: str) -> str:
    """How to get a SAM checkpoint, for :class:`~cellseek.errors.MissingWeightsError`."""
    filename = CHECKPOINTS[model_type]
    return (
        f"Run `cellseek models pull sam_{model_type}` on a machine with internet access, or "
        f"download {URL_BASE}{filename} and put it in ${WEIGHTS_DIR_ENV} (or pass weights_dir), "
        f"or in {torch_hub_dir() / 'checkpoints'}."
    )


def _resolve_checkpoint(model_type: str, checkpoint=None, weights_dir=None) -> Path:
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            inside = path / CHECKPOINTS[model_type]
            if inside.is_file():
                return inside
            found = sorted(p for p in path.iterdir() if p.suffix in (".pth", ".pt"))
            if len(found) == 1:
                return found[0]
        elif path.is_file():
            return path
        raise MissingWeightsError(
            f"sam_{model_type}",
            f"The checkpoint {path} does not exist. {missing_weights_hint(model_type)}",
        )
    path = sam_checkpoint_path(model_type, weights_dir=weights_dir)
    if path is None:
        raise MissingWeightsError(f"sam_{model_type}", missing_weights_hint(model_type))
    return path


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


# -- building the model ----------------------------------------------------------------------
def build_sam_model(
    model_type: str = "vit_b",
    *,
    img_size: int = NATIVE_SIZE,
    embed_dim: int | None = None,
    depth: int | None = None,
    num_heads: int | None = None,
    global_attn_indexes=None,
):
    """The SAM architecture at random initialisation.

    With the official layout at 1024 px this is ``segment_anything.sam_model_registry[model_type]``;
    otherwise the same components (``segment_anything/build_sam.py::_build_sam``) with another
    input size or a reduced encoder (small stand-ins for tests).

    Parameters
    ----------
    model_type : {"vit_b", "vit_l", "vit_h"}
        Supplies every encoder argument not given.
    img_size : int
        Input side in pixels, a multiple of 16.
    embed_dim, depth, num_heads : int, optional
        Encoder width, number of blocks, attention heads.
    global_attn_indexes : sequence of int, optional
        Blocks with global (not windowed) attention.

    Returns
    -------
    segment_anything.modeling.Sam
        In eval mode, on the CPU.
    """
    from functools import partial

    import torch
    from segment_anything import sam_model_registry
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    model_type = _model_type(model_type)
    img_size = int(img_size)
    if img_size % PATCH_SIZE or img_size < PATCH_SIZE:
        raise CellseekError(f"SAM input size must be a multiple of {PATCH_SIZE}, got {img_size}")
    official = OFFICIAL_LAYOUTS[model_type]
    layout = dict(
        embed_dim=official["embed_dim"] if embed_dim is None else int(embed_dim),
        depth=official["depth"] if depth is None else int(depth),
        num_heads=official["num_heads"] if num_heads is None else int(num_heads),
        global_attn_indexes=tuple(
            official["global_attn_indexes"] if global_attn_indexes is None else global_attn_indexes
        ),
    )
    if layout == official and img_size == NATIVE_SIZE:
        return sam_model_registry[model_type](checkpoint=None).eval()
    grid = img_size // PATCH_SIZE
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=layout["depth"],
            embed_dim=layout["embed_dim"],
            img_size=img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=layout["num_heads"],
            patch_size=PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=layout["global_attn_indexes"],
            window_size=WINDOW_SIZE,
            out_chans=PROMPT_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048, num_heads=8
            ),
            transformer_dim=PROMPT_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return sam.eval()


def layout_from_state_dict(state_dict: dict, model_type: str = "vit_b") -> dict:
    """The encoder layout a SAM checkpoint was trained with.

    Returns
    -------
    dict
        ``embed_dim``, ``depth``, ``num_heads``, ``global_attn_indexes`` and ``img_size`` (the
        native input size, from the absolute position embedding).
    """
    model_type = _model_type(model_type)
    try:
        pos = state_dict["image_encoder.pos_embed"]
        patch = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[-1])
    except KeyError as exc:
        raise CellseekError(
            f"sam_{model_type}: the checkpoint holds no SAM image encoder (missing {exc})"
        ) from exc
    grid, embed_dim = int(pos.shape[1]), int(pos.shape[-1])
    blocks = {
        int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")
    }
    depth = max(blocks) + 1 if blocks else 0
    rel = [state_dict.get(f"image_encoder.blocks.{i}.attn.rel_pos_h") for i in range(depth)]
    head_dim = int(rel[0].shape[1]) if depth and rel[0] is not None else embed_dim // 12
    official = OFFICIAL_LAYOUTS[model_type]
    if grid == WINDOW_SIZE or any(r is None for r in rel):
        # global and windowed tables cannot be told apart: fall back to the official layout
        glob = official["global_attn_indexes"] if depth == official["depth"] else ()
    else:
        glob = tuple(i for i, r in enumerate(rel) if int(r.shape[0]) != 2 * WINDOW_SIZE - 1)
    return dict(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=max(embed_dim // max(head_dim, 1), 1),
        global_attn_indexes=tuple(glob),
        img_size=grid * patch,
    )


def resize_position_embeddings(state_dict: dict, model) -> dict:
    """Fit a checkpoint's position embeddings to ``model``'s input size.

    The absolute ``image_encoder.pos_embed`` ``(1, g, g, C)`` is resampled bicubically to the
    model's grid; the relative position tables (``rel_pos_h``/``rel_pos_w``) of global-attention
    blocks are resampled linearly, as ``segment_anything``'s ``get_rel_pos`` does at run time.
    Entries that already fit are returned unchanged (the dict is copied, not modified).
    """
    import torch.nn.functional as F

    target = model.state_dict()
    out = dict(state_dict)
    for key, value in state_dict.items():
        if key not in target or tuple(value.shape) == tuple(target[key].shape):
            continue
        want = tuple(target[key].shape)
        if key == "image_encoder.pos_embed":
            x = value.float().permute(0, 3, 1, 2)
            x = F.interpolate(
                x, size=want[1:3], mode="bicubic", align_corners=False,
                antialias=want[1] < x.shape[-2],
            )
            out[key] = x.permute(0, 2, 3, 1).to(value.dtype).contiguous()
        elif key.endswith((".rel_pos_h", ".rel_pos_w")) and value.ndim == 2:
            x = value.float().t()[None]  # (1, C, L)
            x = F.interpolate(x, size=want[0], mode="linear", align_corners=False)
            out[key] = x[0].t().to(value.dtype).contiguous()
        logger.debug("resized %s from %s to %s", key, tuple(value.shape), want)
    return out


def _device(device):
    from cellseek.zoo._torch_utils import choose_device

    return choose_device(device)


def load_sam(
    model_type: str = "vit_b",
    *,
    checkpoint=None,
    weights_dir=None,
    device="auto",
    img_size: int | None = None,
):
    """Build SAM and load its checkpoint; cached per process.

    Parameters
    ----------
    model_type : {"vit_b", "vit_l", "vit_h"}
        SAM variant.
    checkpoint : path-like, optional
        Explicit checkpoint file (or a folder holding it); default: :func:`sam_checkpoint_path`.
    weights_dir : path-like, optional
        Local weights folder (default ``$CELLSEEK_WEIGHTS_DIR``).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ...
    img_size : int, optional
        Encoder input size; default the checkpoint's own (1024 for the official ones). Another
        size interpolates the position embeddings (see :func:`resize_position_embeddings`).

    Returns
    -------
    segment_anything.modeling.Sam
        In eval mode on ``device``, gradients off. The same object for the same
        ``(model_type, checkpoint file, device, img_size)``.

    Raises
    ------
    MissingWeightsError
        No checkpoint on this machine.
    IncompatibleWeightsError
        The file is not a SAM checkpoint of this kind.
    """
    from cellseek.zoo.weights import load_checked, load_state_dict, unwrap_state_dict

    model_type = _model_type(model_type)
    path = _resolve_checkpoint(model_type, checkpoint, weights_dir)
    dev = _device(device)
    st = path.stat()
    key = (model_type, str(path.resolve()), st.st_size, st.st_mtime_ns, str(dev), img_size)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        name = f"sam_{model_type}"
        state = unwrap_state_dict(load_state_dict(path, name))
        layout = layout_from_state_dict(state, model_type)
        size = int(img_size or layout.pop("img_size"))
        layout.pop("img_size", None)
        logger.info("loading %s from %s (input %d px, %s)", name, path, size, dev)
        model = build_sam_model(model_type, img_size=size, **layout)
        state = resize_position_embeddings(state, model)
        load_checked(model, state, model_name=name, path=path)
        model = model.eval().to(dev)
        for p in model.parameters():
            p.requires_grad_(False)
        model.cellseek_checkpoint = path
        model.cellseek_model_type = model_type
        _MODELS[key] = model
        return model


def clear_model_cache() -> None:
    """Forget every SAM model loaded in this process."""
    with _MODELS_LOCK:
        _MODELS.clear()


# -- the embedder ----------------------------------------------------------------------------
class SamEmbedder:
    """Cell embeddings from SAM's image encoder, averaged inside each cell's mask.

    Parameters
    ----------
    spec : ModelSpec
        ``input_size`` is the encoder's input side; ``dim`` is 256.
    model : segment_anything.modeling.Sam
        Built with ``img_size == spec.input_size`` (see :func:`load_sam`).
    batch_size : int
        Crops per encoder pass.
    """

    def __init__(self, spec: ModelSpec, model, batch_size: int = 8) -> None:
        self.spec = spec
        self.model = model
        self.encoder = model.image_encoder
        self.device = model.device
        self.batch_size = max(int(batch_size), 1)
        if int(self.encoder.img_size) != int(spec.input_size):
            raise CellseekError(
                f"{spec.name}: the encoder takes {self.encoder.img_size} px but the spec says "
                f"{spec.input_size} px"
            )

    def __repr__(self) -> str:
        return f"SamEmbedder({self.spec.name!r}, {self.spec.input_size} px, device={self.device})"

    def preprocess(self, crops: np.ndarray):
        """Crops ``(N, H, W, 3)`` in [0, 1] -> ``(N, 3, S, S)`` with SAM's pixel normalisation."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self.device)
        x = x.permute(0, 3, 1, 2)
        size = int(self.spec.input_size)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        x = x.clamp(0.0, 1.0) * 255.0
        return (x - self.model.pixel_mean) / self.model.pixel_std

    def forward(self, x):
        """Bare image-encoder pass on preprocessed input -> ``(N, 256, h, w)`` (for benchmarks)."""
        import torch

        with torch.inference_mode():
            return self.encoder(x)

    def pool(self, features, masks):
        """Average ``(N, C, h, w)`` features inside the masks (resized to ``(h, w)`` by area).

        A mask that is empty after resizing falls back to the whole map.
        """
        import torch
        import torch.nn.functional as F

        whole = features.mean(dim=(2, 3))
        if masks is None:
            return whole
        m = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)).to(features.device)
        w = F.interpolate(m[:, None], size=features.shape[-2:], mode="area")
        total = w.sum(dim=(2, 3))
        inside = (features * w).sum(dim=(2, 3)) / total.clamp_min(1e-12)
        return torch.where(total > 1e-6, inside, whole)

    def embed(self, crops: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Embed crops -> float32 ``(N, 256)``.

        Parameters
        ----------
        crops : ndarray
            float32 ``(N, H, W, 3)`` in [0, 1].
        masks : ndarray, optional
            bool ``(N, H, W)``; without masks the whole feature map is averaged.
        """
        import torch

        from cellseek.zoo._torch_utils import check_crops

        crops = check_crops(crops, masks)
        if len(crops) == 0:
            return np.zeros((0, self.spec.dim or PROMPT_DIM), np.float32)
        parts = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                feats = self.forward(self.preprocess(crops[i : i + self.batch_size]))
                batch_masks = None if masks is None else masks[i : i + self.batch_size]
                parts.append(self.pool(feats, batch_masks).float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _spec_model_type(spec: ModelSpec) -> str:
    arch = getattr(spec, "arch", "") or ""
    if arch:
        return _model_type(arch)
    return _model_type(spec.name)


def build(spec: ModelSpec, *, weights_dir=None, device="auto", checkpoint=None,
          batch_size: int = 8) -> SamEmbedder:
    """Zoo factory: the SAM cell embedder for ``spec`` (e.g. ``sam_vit_b``).

    The encoder is built at ``spec.input_size`` (position embeddings interpolated when that
    differs from the checkpoint's 1024 px). Raises :class:`~cellseek.errors.MissingWeightsError`
    when the checkpoint is absent.
    """
    model_type = _spec_model_type(spec)
    if checkpoint is None and spec.weights_id and spec.weights_id != CHECKPOINTS[model_type]:
        # a non-standard file name in the spec: look for it in the usual places
        for folder in _search_dirs(model_type, weights_dir):
            if (folder / spec.weights_id).is_file():
                checkpoint = folder / spec.weights_id
                break
    model = load_sam(model_type, checkpoint=checkpoint, weights_dir=weights_dir, device=device,
                     img_size=int(spec.input_size))
    return SamEmbedder(spec, model, batch_size=batch_size)
