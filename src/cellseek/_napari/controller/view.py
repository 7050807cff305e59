"""How the cells of the open images look: colours, hover tables and the suggestions shown."""

from __future__ import annotations

from qtpy.QtCore import QTimer


class CellsView:
    """Keeps the cells layers in step with the cell tables, the suggestions and the threshold.

    Parameters
    ----------
    registry : LayerRegistry
        The open images and their cells layers.
    state : AnnotationState
        Suggestions, threshold and class colours.
    """

    def __init__(self, registry, state) -> None:
        self.registry = registry
        self.state = state

    def recolour(self, item) -> None:
        """Colour the cells of an image's plane on screen (and of its neighbours)."""
        self.registry.refresh_colours(item, self.state.colours, threshold=self.state.threshold)

    def features(self, item, cell_ids=None) -> None:
        """Rebuild an image's hover table (only the rows of ``cell_ids`` when given)."""
        self.registry.refresh_features(item, threshold=self.state.threshold, cell_ids=cell_ids)

    def show(self, item, *, cell_ids=None) -> None:
        """Recolour an image's cells, then update its hover table, each in its own turn of the
        event loop: each costs one napari redraw (or table rebuild), and one after the other in
        the same turn they would freeze the window twice as long."""
        def colours():
            self.recolour(item)
            QTimer.singleShot(0, lambda: self.features(item, cell_ids))  # repaint in between

        QTimer.singleShot(0, colours)

    def refresh_all(self) -> None:
        """Recolour every cells layer and rebuild its hover table."""
        for item in self.registry.images:
            self.show(item)

    def keep_suggestions(self, item, ids) -> None:
        """Write the suggestions shown into an image's cell table (for colours and hover)."""
        for cid in ids:
            sugg = self.state.suggestions.get(cid)
            if sugg is not None:
                item.table.set_state(cid, suggestion=sugg.best_label, confidence=sugg.confidence)

    def update_cells(self, cells) -> list[int]:
        """Store cell dicts read after a change (a label, an undo): the tables, colours and
        hover rows of the images that hold them follow. Returns their ids."""
        for item in self.registry.images:
            hit = [c for c in cells if c["id"] in item.table]
            if hit:
                item.table.update(hit)
                ids = [c["id"] for c in hit]
                self.keep_suggestions(item, ids)
                self.recolour(item)
                self.features(item, ids)
        return [int(c["id"]) for c in cells]
