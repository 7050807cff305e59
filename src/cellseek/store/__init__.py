"""The SQLite reference store: one file holds images, cells, labels, embeddings and the audit log.

``ReferenceStore`` is the public API (a facade in :mod:`cellseek.store.reference_store` that owns
the connection and the transactions). The work is done by modules of functions on a
``sqlite3.Connection``, one job each: ``images`` (images, plane label images), ``cells`` (cells,
embeddings, thumbnails), ``labels`` (labels, audit log, undo, suggestions), ``classes``, ``meta``
(model set, weights, metadata), ``labelled_images`` (labelled images with their labels in one
transaction), ``exchange`` (merge, cells CSV, backup), ``folder_export``, ``integrity``;
``trust`` checks a store made elsewhere, ``blobs`` decodes binary values with bounds, ``schema``
holds the schema and migrations, ``lifecycle`` creates and opens files, ``connection`` holds the
connections and transactions, ``files`` the atomic and exclusive file steps. See ``docs/store.md``.
"""

from cellseek.store.labelled_images import LabelledImage
from cellseek.store.reference_store import ReferenceStore

__all__ = ["LabelledImage", "ReferenceStore"]
