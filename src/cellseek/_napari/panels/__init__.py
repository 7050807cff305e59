"""The widget's panels: pure views that call the controller and redraw on its signals."""

from .models import ModelsPanel
from .neighbours import NeighboursPanel
from .plots import PlotsPanel
from .reference import ReferencePanel
from .segment import SegmentPanel
from .suggest import SuggestPanel

__all__ = ["ModelsPanel", "NeighboursPanel", "PlotsPanel", "ReferencePanel", "SegmentPanel",
           "SuggestPanel"]
