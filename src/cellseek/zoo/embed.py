"""Batched embedding of cell crops as cancellable generators.

:func:`embed_crops` yields :class:`~cellseek.types.Progress` after every batch and returns the
``(N, dim)`` float32 matrix; a consumer cancels by no longer iterating. For torch embedders the
next batch is queued before the previous one is fetched, so on a GPU the host-side preparation of
batch i+1 overlaps the forward pass of batch i.

:func:`raw_forward_fn` exposes the bare model forward on preprocessed tensors so that
``cellseek bench`` can report pipeline throughput as a ratio against it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cellseek.types import Progress, Work
from cellseek.zoo.base import Embedder

logger = logging.getLogger(__name__)


def _check(crops: np.ndarray, masks: np.ndarray) -> None:
    if np.ndim(crops) != 4 or np.shape(crops)[-1] != 3:
        raise ValueError(f"crops must be (N, H, W, 3), got shape {np.shape(crops)}")
    if np.shape(masks)[:3] != np.shape(crops)[:3]:
        raise ValueError(f"masks {np.shape(masks)} do not match crops {np.shape(crops)}")


def embed_crops(
    embedder: Embedder,
    crops: np.ndarray,
    masks: np.ndarray,
    *,
    batch_size: int = 32,
    pixel_size=None,
) -> Work[np.ndarray]:
    """Embed crops batch by batch.

    Parameters
    ----------
    embedder : Embedder
    crops : ndarray
        float32 ``(N, H, W, 3)`` in [0, 1]; not modified.
    masks : ndarray
        bool ``(N, H, W)``.
    batch_size : int
        Crops per forward pass.
    pixel_size : array-like, optional
        ``(N,)`` side of one crop pixel (:func:`cellseek.crops.crop_pixel_sizes`), handed to
        embedders that measure size (``uses_pixel_size = True``, e.g. the classical one).

    Yields
    ------
    Progress
        ``Progress(done, N, stage="embed:<model name>")``, once before the first batch and
        after every batch.

    Returns
    -------
    ndarray
        float32 ``(N, spec.dim)``.
    """
    _check(crops, masks)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    name = embedder.spec.name
    stage = f"embed:{name}"
    n = len(crops)
    dim = int(embedder.spec.dim)
    out: np.ndarray | None = np.empty((n, dim), dtype=np.float32) if dim else None
    yield Progress(0, n, stage)
    submit = getattr(embedder, "embed_async", None)
    sizes = None
    if pixel_size is not None and getattr(embedder, "uses_pixel_size", False):
        sizes = np.broadcast_to(np.asarray(pixel_size, np.float64), (n,))
    pending: tuple[int, int, Callable[[], np.ndarray]] | None = None

    def store(start: int, stop: int, result: np.ndarray) -> None:
        nonlocal out
        if out is None:
            out = np.empty((n, result.shape[1]), dtype=np.float32)
        if result.shape != (stop - start, out.shape[1]):
            raise ValueError(
                f"{name}: embedder returned shape {result.shape} for {stop - start} crops, "
                f"expected ({stop - start}, {out.shape[1]})"
            )
        out[start:stop] = result

    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if sizes is not None:
            store(start, stop, embedder.embed(crops[start:stop], masks[start:stop],
                                              pixel_size=sizes[start:stop]))
            yield Progress(stop, n, stage)
            continue
        if submit is None:
            store(start, stop, embedder.embed(crops[start:stop], masks[start:stop]))
            yield Progress(stop, n, stage)
            continue
        handle = submit(crops[start:stop], masks[start:stop])
        if pending is not None:
            p_start, p_stop, p_handle = pending
            store(p_start, p_stop, p_handle())
            yield Progress(p_stop, n, stage)
        pending = (start, stop, handle)
    if pending is not None:
        p_start, p_stop, p_handle = pending
        store(p_start, p_stop, p_handle())
        yield Progress(p_stop, n, stage)
    if out is None:
        out = np.zeros((0, 0), dtype=np.float32)
    return out


def embed_all(
    embedders: Sequence[Embedder] | Mapping[str, Embedder],
    crops: np.ndarray,
    masks: np.ndarray,
    batch_size: int = 32,
    *,
    pixel_size=None,
) -> Work[dict[str, np.ndarray]]:
    """Embed the same crops with several models, one after the other.

    Yields each model's progress (stage ``embed:<name>``, message ``model i/M``) and returns
    ``{name: (N, dim) float32}``. ``pixel_size`` is as in :func:`embed_crops`.
    """
    items = list(embedders.values() if isinstance(embedders, Mapping) else embedders)
    result: dict[str, np.ndarray] = {}
    for i, embedder in enumerate(items, start=1):
        message = f"model {i}/{len(items)}"
        work = embed_crops(embedder, crops, masks, batch_size=batch_size, pixel_size=pixel_size)
        while True:
            try:
                progress = next(work)
            except StopIteration as stop:
                result[embedder.spec.name] = stop.value
                break
            yield Progress(progress.done, progress.total, progress.stage, message)
    return result


@dataclass(frozen=True)
class RawForward:
    """The bare forward pass of an embedder, for benchmarks.

    ``prepare(crops, masks)`` turns crops into the model's input (a preprocessed tensor on the
    device for torch embedders), outside the timed region; ``forward(batch)`` runs the model
    only and waits for the device to finish.
    """

    prepare: Callable
    forward: Callable


def raw_forward_fn(embedder: Embedder) -> RawForward:
    """The hook a benchmark times against :func:`embed_crops`.

    For torch embedders ``forward`` is the module's forward under ``torch.inference_mode()`` on
    preprocessed device tensors, followed by a device synchronisation. Other embedders
    (classical) have no separate forward: ``forward`` calls ``embed``.
    """
    preprocess = getattr(embedder, "preprocess", None)
    model_forward = getattr(embedder, "forward", None)
    if preprocess is None or model_forward is None:
        return RawForward(
            prepare=lambda crops, masks: (crops, masks),
            forward=lambda batch: embedder.embed(*batch),
        )
    device = getattr(embedder, "device", None)

    def forward(x):
        out = model_forward(x)
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)
        return out

    return RawForward(prepare=lambda crops, masks: preprocess(crops), forward=forward)
