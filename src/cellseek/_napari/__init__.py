"""The napari plugin: reader/writer/sample hooks and the ``CellseekWidget`` dock widget.

This is the only package of cellseek that imports napari or Qt. Widgets compose and wire; the
computation lives in the core (:class:`cellseek.session.Session`, :mod:`cellseek.annotation`).
"""
