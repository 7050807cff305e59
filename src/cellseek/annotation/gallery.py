"""What the neighbour gallery shows for one cell, gathered from a session (no Qt)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cellseek.types import Suggestion


@dataclass(frozen=True)
class Tile:
    """One reference cell in the gallery."""

    cell_id: int
    label: str
    similarity: float
    image_id: int
    image_name: str
    t: int
    z: int
    centroid: tuple[float, float]
    thumbnail: bytes | None


@dataclass(frozen=True)
class Gallery:
    """A query cell, its suggestion and its nearest labelled reference cells."""

    cell: dict
    suggestion: Suggestion
    thumbnail: bytes | None
    tiles: tuple[Tile, ...] = field(default_factory=tuple)


@contextmanager
def few_threads(n: int = 1):
    """Let FAISS use ``n`` OpenMP threads inside the block (when FAISS is already loaded).

    A single query is faster on one thread: OpenMP's thread start-up and spinning cost more
    than the search itself, badly so on a busy machine (33 ms vs 2 ms for 20,000 cells here).
    """
    import sys

    faiss = sys.modules.get("faiss")
    if faiss is None:
        yield
        return
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def neighbour_gallery(session, cell_id: int, *, k: int | None = None) -> Gallery:
    """Look up a cell's nearest labelled reference cells with everything the gallery shows.

    Parameters
    ----------
    session : cellseek.session.Session
        Its index is built on first use (import it in a worker beforehand for a fast first
        click).
    cell_id : int
        Store id of the query cell.
    k : int, optional
        Number of neighbours (default: the session's adaptive k).

    Returns
    -------
    Gallery
    """
    cell_id = int(cell_id)
    with few_threads(1):
        suggestion = session.suggest_cells([cell_id], k=k)[0]
    found = session.store.cells_for_display([cell_id, *(n.cell_id for n in suggestion.neighbours)])
    if cell_id not in found:
        from cellseek.errors import StoreError

        raise StoreError(f"{session.store.path}: there is no cell with id {cell_id} in this store")
    tiles = []
    for n in suggestion.neighbours:
        ref = found.get(int(n.cell_id))
        if ref is None:  # deleted since the index was built
            continue
        tiles.append(Tile(
            cell_id=n.cell_id, label=n.label, similarity=n.similarity,
            image_id=int(ref["image_id"]), image_name=Path(ref["image_path"]).name,
            t=int(ref["t"]), z=int(ref["z"]), centroid=tuple(ref["centroid"]),
            thumbnail=ref["thumbnail"],
        ))
    cell = found[cell_id]
    thumbnail = cell.pop("thumbnail")
    cell.pop("image_path")
    return Gallery(cell, suggestion, thumbnail, tuple(tiles))
