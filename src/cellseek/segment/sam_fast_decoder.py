"""SAM's prompt decoder for one click, rearranged to do about half the arithmetic.

``segment_anything``'s mask decoder spends nearly all of a click's time on the image side of its
two-way transformer: every cross-attention projects all ``h * w`` (4,096 for a 1024 px input)
image tokens to 128 dimensions with a dense matrix, and the output upscaling runs two strided
transposed convolutions. A click has only ``T = 7`` prompt tokens (1 IoU token, 4 mask tokens,
the point and SAM's padding point), so with ``H = 8`` heads every attention between the image and
the tokens has rank ``H * T = 56 < 128``. :class:`FastPointDecoder` uses that:

* token -> image attention: ``softmax(q_h (x W_kh + b_kh)^T) (x W_vh + b_vh)`` is computed as
  ``softmax((q_h W_kh^T) x^T) x`` followed by ``W_vh`` (and ``b_vh``) on the ``T`` rows (the key
  bias shifts a whole row of logits, which softmax ignores), so the image tokens ``x`` meet a
  ``(H*T, C)`` matrix instead of two ``(C, 128)`` projections;
* image -> token attention: the query projection and the output projection are folded into
  ``(C, H*T)`` and ``(H*T, C)`` matrices built from the 7 tokens;
* the first layer's image keys and values do not depend on the click: they are projected once
  per image (:meth:`FastPointDecoder.set_image`) and reused;
* the two 2x2, stride-2 transposed convolutions of the upscaling touch disjoint output pixels,
  so each is one matrix product followed by a reshape;
* only the mask that will be kept (highest predicted IoU) is upscaled.

Every step is the same function as the original, re-associated: the low-resolution mask logits
agree with ``SamPredictor.predict`` to float32 rounding (tested at random initialisation on the
real architecture). A box prompt also has two sparse tokens (its corners), so boxes take the
same path (``boxes=``): the prompts box-trained models such as LiteMedSAM understand. Used by
:meth:`cellseek.segment.sam.SamSegmenter.segment_point` and the automatic modes.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import NamedTuple

__all__ = ["FastPointDecoder", "torch_threads"]


def _heads(x, num_heads: int):
    """``(B, N, H*d) -> (B, H, N, d)``."""
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)


def _merge(x):
    """``(B, H, N, d) -> (B, N, H*d)``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _tokens_to_image(attn, q_tokens, keys_pe, keys, cached=None):
    """Tokens attend to the image: ``attn(q=q_tokens, k=keys_pe, v=keys)``, low-rank.

    ``cached`` is ``(k_proj(keys_pe), v_proj(keys))`` when they do not depend on the click.
    """
    import torch

    h = attn.num_heads
    q = _heads(attn.q_proj(q_tokens), h)  # (B, H, T, d)
    b, _, t, d = q.shape
    scale = 1.0 / math.sqrt(d)
    if cached is not None:
        k, v = (_heads(x, h) for x in cached)
        weights = torch.softmax((q @ k.transpose(-1, -2)) * scale, dim=-1)
        return attn.out_proj(_merge(weights @ v))
    wk = attn.k_proj.weight.view(h, d, -1)  # (H, d, C)
    a = q @ wk.unsqueeze(0)  # (B, H, T, C)
    # the key bias adds q_h . b_kh to a whole row of logits: softmax ignores it
    logits = (a.reshape(b, h * t, -1) @ keys_pe.transpose(1, 2)).view(b, h, t, -1) * scale
    weights = torch.softmax(logits, dim=-1)  # (B, H, T, N)
    mixed = (weights.reshape(b, h * t, -1) @ keys).view(b, h, t, -1)  # (B, H, T, C)
    wv = attn.v_proj.weight.view(h, d, -1)
    bv = attn.v_proj.bias.view(h, d)
    out = mixed @ wv.transpose(1, 2).unsqueeze(0) + bv[None, :, None, :]  # (B, H, T, d)
    return attn.out_proj(_merge(out))


def _image_to_tokens(attn, keys_pe, q_tokens, v_tokens):
    """The image attends to the tokens: ``attn(q=keys_pe, k=q_tokens, v=v_tokens)``, low-rank."""
    import torch

    h = attn.num_heads
    k = _heads(attn.k_proj(q_tokens), h)  # (B, H, T, d)
    v = _heads(attn.v_proj(v_tokens), h)
    b, _, t, d = k.shape
    scale = 1.0 / math.sqrt(d)
    wq = attn.q_proj.weight.view(h, d, -1)  # (H, d, C)
    bq = attn.q_proj.bias.view(h, d)
    # logits_h = (x Wq_h^T + bq_h) k_h^T = x (Wq_h^T k_h^T) + bq_h k_h^T
    m = (wq.transpose(1, 2).unsqueeze(0) @ k.transpose(-1, -2))  # (B, H, C, T)
    m = m.permute(0, 2, 1, 3).reshape(b, -1, h * t)  # (B, C, H*T)
    bias = (bq[None, :, None, :] * k).sum(-1).reshape(b, 1, h * t)
    logits = (keys_pe @ m + bias) * scale  # (B, N, H*T)
    n = logits.shape[1]
    weights = _softmax_last(logits.view(b, n, h, t)).view(b, n, h * t)
    # out_proj(concat_h weights_h v_h) = sum_h weights_h (v_h Wo_h^T) + bo
    wo = attn.out_proj.weight.view(-1, h, d)  # (C, H, d)
    u = torch.einsum("bhtd,chd->bhtc", v, wo).reshape(b, h * t, -1)  # (B, H*T, C)
    return weights @ u + attn.out_proj.bias


def _softmax_last(x):
    """Softmax over a short last axis, written out: ``torch.softmax`` over a last axis of 7
    took 4.1 ms for ``(1, 4096, 8, 7)`` on one CPU thread, this 0.7 ms (same formula)."""
    x = x - x.amax(-1, keepdim=True)
    x = x.exp_()
    return x.div_(x.sum(-1, keepdim=True))


def _upscale(x, upscaling):
    """SAM's ``output_upscaling`` on channels-last token pixels ``(h, w, C)``.

    Returns ``(h, w, 2, 2, 2, 2, C/8)``: per token, its 4x4 block of upscaled pixels. The
    ``LayerNorm2d`` normalises over channels, which channels-last makes the last axis, so the
    fused ``layer_norm`` computes it (4x faster than the five element-wise steps).
    """
    import torch

    up1, norm, act1, up2, act2 = upscaling
    x = _conv_transpose_2x2(x, up1)  # (h, w, 2, 2, C/4)
    x = torch.nn.functional.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)
    return act2(_conv_transpose_2x2(act1(x), up2))


def _conv_transpose_2x2(x, conv):
    """A 2x2, stride-2 ``ConvTranspose2d`` on channels-last ``(..., C_in)`` pixels.

    Returns ``(..., 2, 2, C_out)``: each input pixel's 2x2 block of output pixels.
    """
    c_in, c_out = conv.weight.shape[:2]
    w = conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)  # (C_in, (a, c, C_out))
    y = x @ w
    return y.view(*x.shape[:-1], 2, 2, c_out) + conv.bias


class _ImageState(NamedTuple):
    """What :meth:`FastPointDecoder.set_image` prepares: image keys ``(1, N, C)``, keys plus
    positional encoding, the first layer's projected keys and values, and the grid ``(h, w)``."""

    keys: object
    keys_pe: object
    first_kv: tuple
    grid: tuple[int, int]


class FastPointDecoder:
    """Point-prompt mask decoding of one SAM model on one image embedding at a time.

    Parameters
    ----------
    model : segment_anything.modeling.Sam
        A SAM model (any encoder size; the decoder is the same).

    Notes
    -----
    Call :meth:`set_image` with the image embedding, then :meth:`predict` per click. All work
    runs under ``torch.inference_mode``.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.decoder = model.mask_decoder
        self._image = None
        self._pe = None

    def set_image(self, features) -> None:
        """Prepare an image embedding ``(1, C, h, w)``: everything that does not need the click."""
        import torch

        pe_layer = self.model.prompt_encoder
        with torch.inference_mode():
            _, c, gh, gw = features.shape
            if self._pe is None or self._pe.shape[1] != gh * gw:
                pe = pe_layer.pe_layer((gh, gw)).unsqueeze(0)  # (1, C, h, w)
                self._pe = pe.flatten(2).transpose(1, 2).contiguous()  # (1, N, C)
            dense = pe_layer.no_mask_embed.weight.reshape(1, c)
            keys = features.flatten(2).transpose(1, 2) + dense  # (1, N, C)
            keys = keys.contiguous()
            keys_pe = keys + self._pe
            first = self.decoder.transformer.layers[0].cross_attn_token_to_image
            cached = (first.k_proj(keys_pe), first.v_proj(keys))
        self._image = _ImageState(keys, keys_pe, cached, (gh, gw))

    def _transformer(self, tokens):
        """The two-way transformer; returns (tokens out, image keys out)."""
        keys, keys_pe, cached = self._image.keys, self._image.keys_pe, self._image.first_kv
        tr = self.decoder.transformer
        pe = self._pe
        queries = tokens
        for i, layer in enumerate(tr.layers):
            # self-attention among the few prompt tokens: SAM's own module
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + tokens
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            q = queries + tokens
            queries = queries + _tokens_to_image(layer.cross_attn_token_to_image, q, keys_pe,
                                                 keys, cached if i == 0 else None)
            queries = layer.norm2(queries)
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + tokens
            keys = layer.norm4(keys + _image_to_tokens(layer.cross_attn_image_to_token,
                                                       keys_pe, q, queries))
            keys_pe = keys + pe
        q = queries + tokens
        queries = queries + _tokens_to_image(tr.final_attn_token_to_image, q, keys_pe, keys)
        return tr.norm_final_attn(queries), keys

    def _upscaled_mask(self, keys, hyper):
        """Low-resolution logits of one mask: ``hyper . upscale(keys)``, as ``(4h, 4w)``."""
        gh, gw = self._image.grid
        x = _upscale(keys[0].view(gh, gw, -1), self.decoder.output_upscaling)
        logits = x @ hyper  # (h, w, a1, c1, a2, c2)
        return logits.permute(0, 2, 4, 1, 3, 5).reshape(4 * gh, 4 * gw)

    def _sparse(self, points, labels, boxes):
        """SAM's sparse prompt embeddings of points and/or boxes."""
        pts = None if points is None else (points, labels)
        sparse, _ = self.model.prompt_encoder(points=pts, boxes=boxes, masks=None)
        return sparse

    def predict(self, points, labels, *, multimask: bool = True, boxes=None):
        """Low-resolution logits of the best mask for point and/or box prompts.

        Parameters
        ----------
        points : torch.Tensor or None
            ``(1, P, 2)`` point coordinates in the model's input frame (``x, y``).
        labels : torch.Tensor or None
            ``(1, P)``: 1 foreground, 0 background.
        boxes : torch.Tensor, optional
            ``(1, 4)`` box ``(x0, y0, x1, y1)`` in the model's input frame.
        multimask : bool
            As ``SamPredictor.predict(multimask_output=...)``; the kept mask is the one with
            the highest predicted IoU among the returned candidates.

        Returns
        -------
        logits : torch.Tensor
            ``(1, 1, 4h, 4w)`` low-resolution mask logits.
        iou : float
            The kept mask's predicted IoU.
        """
        import torch

        if self._image is None:
            raise RuntimeError("set_image() must be called before predict()")
        dec = self.decoder
        with torch.inference_mode():
            sparse = self._sparse(points, labels, boxes)
            output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
            tokens = torch.cat((output_tokens.unsqueeze(0), sparse), dim=1)
            hs, keys = self._transformer(tokens)
            iou = dec.iou_prediction_head(hs[:, 0, :])[0]
            candidates = range(1, dec.num_mask_tokens) if multimask else range(0, 1)
            best = max(candidates, key=lambda i: float(iou[i]))
            hyper = dec.output_hypernetworks_mlps[best](hs[:, 1 + best, :])[0]
            logits = self._upscaled_mask(keys, hyper)
        return logits[None, None], float(iou[best])

    def predict_batch(self, points, labels, *, multimask: bool = True, windows=None, boxes=None):
        """Low-resolution logits of the best mask of each of ``B`` independent prompts.

        The same function as :meth:`predict` applied to every prompt (the image-side matrices
        of all prompts are stacked, which a CPU runs faster than one prompt at a time).

        Parameters
        ----------
        points : torch.Tensor or None
            ``(B, P, 2)`` point coordinates in the model's input frame (``x, y``).
        labels : torch.Tensor or None
            ``(B, P)``.
        boxes : torch.Tensor, optional
            ``(B, 4)`` boxes ``(x0, y0, x1, y1)`` in the model's input frame.
        multimask : bool
            As in :meth:`predict`.
        windows : sequence of (r0, r1, c0, c1), optional
            Per prompt, the token-grid rows ``r0:r1`` and columns ``c0:c1`` whose mask pixels
            are wanted. Every low-resolution mask pixel depends on one image token only after
            the transformer, so the logits inside a window are exactly those of the full mask;
            outside it they are ``-inf`` (not computed).

        Returns
        -------
        logits : torch.Tensor
            ``(B, 1, 4h, 4w)``.
        iou : torch.Tensor
            ``(B,)`` predicted IoU of the kept masks.
        """
        import torch

        if self._image is None:
            raise RuntimeError("set_image() must be called before predict_batch()")
        dec = self.decoder
        gh, gw = self._image.grid
        n = (points if points is not None else boxes).shape[0]
        with torch.inference_mode():
            sparse = self._sparse(points, labels, boxes)
            output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
            tokens = torch.cat((output_tokens.unsqueeze(0).expand(n, -1, -1), sparse), dim=1)
            hs, keys = self._transformer(tokens)
            iou = dec.iou_prediction_head(hs[:, 0, :])  # (B, 4)
            lo = 1 if multimask else 0
            hi = dec.num_mask_tokens if multimask else 1
            best = lo + torch.argmax(iou[:, lo:hi], dim=1)
            out = torch.full((n, 1, 4 * gh, 4 * gw), float("-inf"))
            for i in range(n):
                k = int(best[i])
                hyper = dec.output_hypernetworks_mlps[k](hs[i, 1 + k, :])
                r0, r1, c0, c1 = (0, gh, 0, gw) if windows is None else windows[i]
                out[i, 0, 4 * r0 : 4 * r1, 4 * c0 : 4 * c1] = self._upscaled_window(
                    keys[i if keys.shape[0] > 1 else 0], hyper, (r0, r1, c0, c1))
        return out, iou[torch.arange(n), best]

    def _upscaled_window(self, keys, hyper, window):
        """:meth:`_upscaled_mask` on the tokens of one window, ``(4 (r1-r0), 4 (c1-c0))``."""
        gh, gw = self._image.grid
        r0, r1, c0, c1 = window
        x = _upscale(keys.view(gh, gw, -1)[r0:r1, c0:c1], self.decoder.output_upscaling)
        logits = x @ hyper
        h, w = r1 - r0, c1 - c0
        return logits.permute(0, 2, 4, 1, 3, 5).reshape(4 * h, 4 * w)


@contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch intra-op threads, then restore the previous number."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
