"""Small value objects shared by the core, the CLI and the napari layer.

Everything here is plain data: no computation beyond trivial properties, no heavy imports.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One progress report from a long-running generator.

    Parameters
    ----------
    done : int
        Units of work finished so far.
    total : int
        Units of work in all (0 when unknown).
    stage : str
        Short name of the current stage, e.g. ``"segment"`` or ``"embed:dinov2_vits14"``.
    message : str
        Optional human-readable detail.
    """

    done: int
    total: int
    stage: str = ""
    message: str = ""

    @property
    def fraction(self) -> float:
        """Fraction finished in [0, 1] (0 when the total is unknown)."""
        return self.done / self.total if self.total else 0.0


#: A long-running computation: yields :class:`Progress`, returns its result.
Work = Generator[Progress, None, T]


@dataclass(frozen=True)
class ImageData:
    """An image read from disk, with named axes and physical metadata.

    Parameters
    ----------
    data : array-like
        NumPy or Dask array.
    axes : str
        One letter per dimension of ``data``, from ``"TZCYXS"`` (``S``: RGB samples, last).
    path : str
        Source file or folder.
    pixel_size_um : float or None
        Lateral pixel size in micrometres, when the file states it.
    z_step_um : float or None
        Axial step in micrometres, when stated.
    time_interval_s : float or None
        Frame interval in seconds, when stated.
    channel_names : tuple of str
        One name per ``C`` entry (empty when there is no ``C`` axis).
    device : str
        Where the image came from: ``"nanolive"``, ``"lionheart"``, ``"ome-tiff"``, ``"imagej"``,
        ``"tiff"``, ``"rgb"`` ...
    metadata : dict
        Anything else the reader found (objective, wavelength, units ...).
    """

    data: Any
    axes: str
    path: str = ""
    pixel_size_um: float | None = None
    z_step_um: float | None = None
    time_interval_s: float | None = None
    channel_names: tuple[str, ...] = ()
    device: str = "unknown"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.axes) != np.ndim(self.data):
            raise ValueError(
                f"{self.path or 'image'}: axes {self.axes!r} do not match data with "
                f"{np.ndim(self.data)} dimensions {tuple(np.shape(self.data))}"
            )

    @property
    def is_rgb(self) -> bool:
        """True when the last axis holds RGB(A) samples."""
        return self.axes.endswith("S")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``data``."""
        return tuple(np.shape(self.data))


@dataclass(frozen=True)
class Cell:
    """One segmented cell in one plane of an image.

    Parameters
    ----------
    label : int
        Value of the cell in the instance label image of its plane (> 0).
    t, z : int
        Time and z index of the plane (0 for single planes).
    bbox : tuple of int
        ``(row_min, col_min, row_max, col_max)``, half-open, in plane pixels.
    centroid : tuple of float
        ``(row, col)`` in plane pixels.
    area : int
        Pixels inside the mask.
    touches_border : bool
        Whether the mask touches the image border.
    """

    label: int
    t: int = 0
    z: int = 0
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)
    centroid: tuple[float, float] = (0.0, 0.0)
    area: int = 0
    touches_border: bool = False


@dataclass(frozen=True)
class Neighbour:
    """A reference cell found near a query cell.

    ``cell_id`` is the store's primary key of the reference cell; ``similarity`` the fused inner
    product (a weighted sum of cosines, in [-1, 1]).
    """

    cell_id: int
    label: str
    similarity: float


@dataclass(frozen=True)
class Suggestion:
    """A suggested label for one query cell.

    Parameters
    ----------
    label : str or None
        The suggested class, or None when the vote abstains (confidence below threshold or no
        reference cells).
    confidence : float
        Vote share of the winning class times the familiarity, in [0, 1].
    entropy : float
        Shannon entropy (nats) of the similarity-weighted vote.
    votes : dict
        Class -> vote share.
    neighbours : tuple of Neighbour
        The k nearest reference cells, most similar first.
    best_label : str or None
        The winning class even when the suggestion abstains.
    familiarity : float
        How near the cell is to confirmed cells of its best class, relative to their own
        spacing (1: as near as they are to each other; 0: unlike any of them). The confidence
        is the vote share of the best class times this.
    predictor : str
        What decided the label: ``"knn"`` (the neighbours' vote), ``"lda"`` / ``"logistic"``
        (a head learned from the confirmed cells) or ``"blend-lda"`` / ``"blend-logistic"``
        (the vote and a head); see :mod:`cellseek.search.choice`.
    size_flag : str or None
        ``"fragment"`` or ``"oversized"`` when the object's area is far from the confirmed cells
        of its best class (or from its image's typical cell); such objects are never accepted
        in bulk (:mod:`cellseek.search.sizes`). None otherwise, or when not checked.
    """

    label: str | None
    confidence: float
    entropy: float
    votes: dict[str, float] = field(default_factory=dict)
    neighbours: tuple[Neighbour, ...] = ()
    best_label: str | None = None
    familiarity: float = 1.0
    predictor: str = "knn"
    size_flag: str | None = None

    @property
    def uncertain(self) -> bool:
        """True when the suggestion abstained."""
        return self.label is None


#: The states of a cell, as the glossary of the user guide defines them.
CELL_STATES = ("confirmed", "suggested", "uncertain", "unlabelled")


def cell_state(label, suggestion, confidence) -> str:
    """The state of a cell (:data:`CELL_STATES`).

    ``confirmed``: it has a class (given, accepted or imported); ``suggested``: a suggestion
    is shown (its confidence reaches the threshold); ``uncertain``: the vote ran but its best
    guess stays below the threshold; ``unlabelled``: neither confirmed nor suggested yet.
    """
    if label:
        return "confirmed"
    if suggestion:
        return "suggested"
    if confidence is not None and confidence == confidence:  # not NaN
        return "uncertain"
    return "unlabelled"


def run_work(work: Work[T], callback=None) -> T:
    """Run a long-running generator to completion and return its result.

    Parameters
    ----------
    work : generator
        Yields :class:`Progress`, returns the result.
    callback : callable, optional
        Called with every :class:`Progress`.

    Returns
    -------
    object
        The generator's return value.
    """
    while True:
        try:
            progress = next(work)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(progress)
