"""micro-sam's instance-segmentation decoder (the "AIS" decoder of its light-microscopy models).

micro-sam (Archit et al. 2025, MIT) fine-tunes SAM for light microscopy and trains, next to it, a
convolutional UNETR decoder on top of SAM's image embedding that predicts three maps per pixel:
foreground probability, distance to the object centre and distance to the object boundary. A
seeded watershed on those maps gives every cell of a field at once, without a grid of prompts
(:func:`instances_from_decoder_output`).

The decoder is ``torch_em.model.UNETR(backbone="sam", use_skip_connection=False,
out_channels=3, final_activation="Sigmoid")`` without its encoder, run by micro-sam's
``DecoderAdapter`` on a precomputed embedding. torch_em pulls in bioimageio.core, tensorboard,
kornia and more, so this module builds the same layers with the same parameter names:

``base`` (ConvBlock 256->512), ``deconv1..4`` (upsample + 3x3 conv + BatchNorm: 256->512->256->128
->64, each doubling the resolution), ``decoder.samplers.<i>`` / ``decoder.blocks.<i>`` (three
levels 512->256->128->64 with skips from ``deconv1..3``), ``deconv_out``, ``decoder_head``
(ConvBlock 128->64) and ``out_conv`` (1x1, 3 channels). Upsampling is bilinear + 1x1 conv
(``.conv``) or a 2x2 transposed convolution (``.block``), recognised from the checkpoint's keys
as micro-sam does. ``tests/zoo/test_sam_instance_decoder.py`` checks names, shapes and outputs
against a manifest and reference values written from torch_em's own code.

One behaviour of torch_em is kept on purpose: its decoder crops a skip connection that has more
channels than the upsampled path to the *centre* channels (``Decoder._crop`` crops every
dimension), so of ``deconv1``'s 512 channels only 128..384 reach the first level.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

__all__ = [
    "build_instance_decoder",
    "decoder_uses_conv_transpose",
    "instances_from_decoder_output",
]

#: Feature widths of the decoder levels (torch_em: ``initial_features=64``, depth 3, gain 2).
FEATURES = (512, 256, 128, 64)


def decoder_uses_conv_transpose(state_dict) -> bool:
    """Whether a decoder checkpoint upsamples with transposed convolutions (micro-sam's test)."""
    return any(".block." in k for k in state_dict if k.startswith("decoder.samplers"))


@functools.cache
def _classes() -> SimpleNamespace:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvBlock(nn.Module):
        """InstanceNorm, 3x3 conv, ReLU, InstanceNorm, 3x3 conv, ReLU (``.block.{1,4}``)."""

        def __init__(self, cin, cout):
            super().__init__()
            self.block = nn.Sequential(
                nn.InstanceNorm2d(cin), nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                nn.InstanceNorm2d(cout), nn.Conv2d(cout, cout, 3, padding=1),
                nn.ReLU(inplace=True),
            )

        def forward(self, x):
            return self.block(x)

    class Upsampler(nn.Module):
        """Bilinear 2x, then a 1x1 convolution (``.conv``)."""

        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 1)

        def forward(self, x):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            return self.conv(x)

    class TransposedUpsampler(nn.Module):
        """A 2x2, stride-2 transposed convolution (``.block``)."""

        def __init__(self, cin, cout):
            super().__init__()
            self.block = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)

        def forward(self, x):
            return self.block(x)

    class SingleConv(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.block = nn.Conv2d(cin, cout, 3, stride=1, padding=1)

        def forward(self, x):
            return self.block(x)

    class DeconvBlock(nn.Module):
        """Upsample 2x, 3x3 conv, BatchNorm, ReLU (``.block.{0,1,2}``)."""

        def __init__(self, cin, cout, up):
            super().__init__()
            self.block = nn.Sequential(up(cin, cout), SingleConv(cout, cout),
                                       nn.BatchNorm2d(cout), nn.ReLU(True))

        def forward(self, x):
            return self.block(x)

    class Decoder(nn.Module):
        """Three levels: upsample, concatenate the (centre-cropped) skip, ConvBlock."""

        def __init__(self, up):
            super().__init__()
            pairs = list(zip(FEATURES[:-1], FEATURES[1:]))
            self.blocks = nn.ModuleList(ConvBlock(cin, cout) for cin, cout in pairs)
            self.samplers = nn.ModuleList(up(cin, cout) for cin, cout in pairs)

        @staticmethod
        def _crop(skip, like):
            """torch_em's ``Decoder._crop``: centre-crop every dimension after the batch."""
            start = [(s - t) // 2 for s, t in zip(skip.shape[1:], like.shape[1:])]
            index = (slice(None),) + tuple(
                slice(a, a + t) for a, t in zip(start, like.shape[1:])
            )
            return skip[index]

        def forward(self, x, skips):
            for block, sampler, skip in zip(self.blocks, self.samplers, skips):
                x = sampler(x)
                x = block(torch.cat([x, self._crop(skip, x)], dim=1))
            return x

    class InstanceDecoder(nn.Module):
        """SAM image embedding ``(B, 256, g, g)`` -> sigmoid maps ``(B, 3, 16 g, 16 g)``."""

        def __init__(self, embed_dim=256, out_channels=3, conv_transpose=False):
            super().__init__()
            up = TransposedUpsampler if conv_transpose else Upsampler
            f = FEATURES
            self.conv_transpose = bool(conv_transpose)
            self.decoder = Decoder(up)
            self.deconv1 = DeconvBlock(embed_dim, f[0], up)
            self.deconv2 = DeconvBlock(f[0], f[1], up)
            self.deconv3 = DeconvBlock(f[1], f[2], up)
            self.deconv4 = DeconvBlock(f[2], f[3], up)
            self.base = ConvBlock(embed_dim, f[0])
            self.out_conv = nn.Conv2d(f[3], out_channels, 1)
            self.deconv_out = up(f[3], f[3])
            self.decoder_head = ConvBlock(2 * f[3], f[3])
            self.final_activation = nn.Sigmoid()

        def forward(self, z12):
            z9 = self.deconv1(z12)
            z6 = self.deconv2(z9)
            z3 = self.deconv3(z6)
            z0 = self.deconv4(z3)
            x = self.decoder(self.base(z12), [z9, z6, z3])
            x = self.deconv_out(x)
            x = self.decoder_head(torch.cat([x, z0], dim=1))
            return self.final_activation(self.out_conv(x))

    return SimpleNamespace(InstanceDecoder=InstanceDecoder)


def build_instance_decoder(*, conv_transpose: bool = False, embed_dim: int = 256):
    """The decoder at random initialisation (eval mode)."""
    return _classes().InstanceDecoder(embed_dim=embed_dim,
                                      conv_transpose=conv_transpose).eval()


def decoder_maps(decoder, features, input_size, original_size, img_size: int):
    """Run the decoder on one embedding and bring its maps to the image's pixels.

    As torch_em's ``UNETR.postprocess_masks``: resize to the encoder's square input, drop the
    padding (``input_size`` is the image after SAM's longest-side resize), resize to
    ``original_size``.

    Returns
    -------
    ndarray
        float32 ``(3, rows, cols)``: foreground, centre distance, boundary distance.
    """
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        x = decoder(features)
        x = F.interpolate(x, (img_size, img_size), mode="bilinear", align_corners=False)
        x = x[..., : int(input_size[0]), : int(input_size[1])]
        x = F.interpolate(x, tuple(int(v) for v in original_size), mode="bilinear",
                          align_corners=False)
    return x[0].float().cpu().numpy()


def instances_from_decoder_output(
    maps: np.ndarray,
    *,
    center_distance_threshold: float = 0.5,
    boundary_distance_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    foreground_smoothing: float = 1.0,
    distance_smoothing: float = 1.6,
    min_size: int = 0,
) -> np.ndarray:
    """Seeded watershed on the decoder maps (micro-sam's ``InstanceSegmentationWithDecoder``).

    Seeds are the connected components where both smoothed distances are below their
    thresholds inside the foreground; the watershed floods the smoothed boundary distance,
    restricted to the foreground. Defaults are micro-sam's ``generate`` defaults.

    Parameters
    ----------
    maps : ndarray
        ``(3, rows, cols)`` from :func:`decoder_maps`.

    Returns
    -------
    ndarray
        int32 labels numbered 1..n.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import relabel_sequential, watershed

    foreground, center, boundary = (np.asarray(m, np.float32) for m in maps)
    if foreground_smoothing > 0:
        foreground = ndi.gaussian_filter(foreground, foreground_smoothing)
    if distance_smoothing > 0:
        center = ndi.gaussian_filter(center, distance_smoothing)
        boundary = ndi.gaussian_filter(boundary, distance_smoothing)
    fg = foreground > foreground_threshold
    seeds = (center < center_distance_threshold) & (boundary < boundary_distance_threshold) & fg
    markers, _ = ndi.label(seeds)
    labels = watershed(boundary, markers=markers, mask=fg)
    if min_size > 0 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = np.flatnonzero(sizes < min_size)
        labels[np.isin(labels, small[small > 0])] = 0
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.int32, copy=False)
