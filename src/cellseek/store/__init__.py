"""The SQLite reference store: one file holds images, cells, labels, embeddings and the audit log.

``ReferenceStore`` (in :mod:`cellseek.store.reference_store`) is the public API; the schema and
its migrations live in :mod:`cellseek.store.schema`, merge / CSV export / backup in
:mod:`cellseek.store.exchange`.
"""

from cellseek.store.reference_store import ReferenceStore

__all__ = ["ReferenceStore"]
