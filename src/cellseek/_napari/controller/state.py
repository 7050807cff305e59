"""What one widget's annotation holds (:class:`AnnotationState`) and what it announces
(:class:`Signals`); the controller's parts share both as named dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field

from qtpy.QtCore import QObject, Signal

from cellseek.annotation.review import ReviewQueue
from cellseek.config import Config


@dataclass(eq=False)
class AnnotationState:
    """The annotation state of one widget.

    Attributes
    ----------
    config : Config
        The settings new reference sets and segmentations start from.
    session : cellseek.session.Session or None
        The open reference set.
    current : OpenImage or None
        The image under annotation (the Segment tab's image, the one on screen).
    selected : int or None
        Id of the selected cell: the one the next key labels.
    suggestions : dict
        Cell id -> :class:`~cellseek.types.Suggestion` of the suggestions shown.
    queue : ReviewQueue
        The uncertain cells, least confident first.
    threshold : float
        The confidence a suggestion needs to be shown and accepted in bulk.
    classes : list of ClassInfo
        The classes of the open reference set, in key order.
    colours : dict
        Class -> RGB.
    """

    config: Config = field(default_factory=Config)
    session: object = None
    current: object = None
    selected: int | None = None
    suggestions: dict = field(default_factory=dict)
    queue: ReviewQueue = field(default_factory=ReviewQueue)
    threshold: float = 0.0
    classes: list = field(default_factory=list)
    colours: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.threshold:
            self.threshold = self.config.suggest.threshold


class Signals(QObject):
    """What the controller announces to the panels (all on the GUI thread)."""

    session_changed = Signal()
    cells_changed = Signal()
    labels_changed = Signal()
    classes_changed = Signal()
    selection_changed = Signal(object)  # cell id or None
    current_changed = Signal(object)  # OpenImage or None
    gallery = Signal(object)  # the Gallery of the selected cell, once looked up
    message = Signal(str)  # a line for the widget's status
    sam_reason = Signal(str)  # which SAM model segmented and why
    edit_armed = Signal(object)  # "merge" / "split" while the next click edits an object, or None
