"""The annotation controller: state and signals, composed of plain parts with named
dependencies (reference sets, segmenting, labelling) over the layers the plugin made."""

from .controller import AnnotationController

__all__ = ["AnnotationController"]
