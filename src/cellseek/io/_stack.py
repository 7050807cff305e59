"""Assemble an array from a grid of planes, eagerly (NumPy) or lazily (Dask, one task per plane)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

#: Stacks larger than this are loaded lazily when ``lazy="auto"`` (1 GiB).
LAZY_THRESHOLD_BYTES = 1 << 30


def want_lazy(lazy, nbytes: int) -> bool:
    """Decide whether to build a lazy (Dask) array.

    Parameters
    ----------
    lazy : {"auto", True, False}
        ``"auto"``: lazy when the stack is larger than :data:`LAZY_THRESHOLD_BYTES`.
    nbytes : int
        Size of the whole stack in bytes.

    Returns
    -------
    bool
    """
    if isinstance(lazy, str):
        if lazy != "auto":
            raise ValueError(f"lazy must be 'auto', True or False, not {lazy!r}")
        return nbytes > LAZY_THRESHOLD_BYTES
    return bool(lazy)


def stack_planes(
    grid_shape: tuple[int, ...],
    plane_shape: tuple[int, ...],
    dtype,
    load: Callable[[tuple[int, ...]], np.ndarray],
    *,
    lazy: bool,
):
    """Build an array of shape ``grid_shape + plane_shape`` from a per-plane loader.

    Parameters
    ----------
    grid_shape : tuple of int
        Shape of the leading (non-plane) axes.
    plane_shape : tuple of int
        Shape of one plane, e.g. ``(Y, X)`` or ``(Y, X, 3)``.
    dtype : dtype
        Data type of every plane (the loader's result is cast to it).
    load : callable
        ``load(index) -> ndarray`` for an index into ``grid_shape``.
    lazy : bool
        Return a Dask array with one chunk per plane; nothing is read until computed.

    Returns
    -------
    numpy.ndarray or dask.array.Array
    """
    dtype = np.dtype(dtype)

    def load_cast(index):
        return np.asarray(load(index)).astype(dtype, copy=False).reshape(plane_shape)

    if not lazy:
        out = np.empty(tuple(grid_shape) + tuple(plane_shape), dtype=dtype)
        for index in np.ndindex(*grid_shape):
            out[index] = load_cast(index)
        return out

    import dask
    import dask.array as da

    def build(prefix: tuple[int, ...]):
        if len(prefix) == len(grid_shape):
            task = dask.delayed(load_cast, pure=False)(prefix)
            return da.from_delayed(task, shape=tuple(plane_shape), dtype=dtype)
        level = grid_shape[len(prefix)]
        return da.stack([build(prefix + (i,)) for i in range(level)], axis=0)

    return build(())
