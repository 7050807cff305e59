"""Small pure helpers behind the napari annotator (no Qt, no napari).

- :mod:`~cellseek.annotation.colours`: stable class colours and per-cell colour tables.
- :mod:`~cellseek.annotation.cells`: label values <-> store cell ids, stack-unique label values.
- :mod:`~cellseek.annotation.composition`: class counts and fractions per frame or z slice.
- :mod:`~cellseek.annotation.embedding_map`: 2-D maps (PCA, optional UMAP) of cell embeddings.
- :mod:`~cellseek.annotation.review`: the review queue and threshold decisions.
- :mod:`~cellseek.annotation.classes`: classes of a store with their keys and colours.
- :mod:`~cellseek.annotation.gallery`: the neighbour gallery of a clicked cell.
"""
