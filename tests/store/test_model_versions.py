"""Embedding-space versions: a store made by another version of a model is refused, not mixed."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.config import Config
from cellseek.errors import IncompatibleStoreError
from cellseek.session import Session
from cellseek.store import ReferenceStore
from cellseek.store.meta import check_same_versions
from cellseek.types import Cell
from cellseek.zoo import get_spec, model_versions


def _cells(n):
    return [Cell(label=i + 1, t=0, z=0, bbox=(0, 0, 5, 5), centroid=(2.0, 2.0), area=25,
                 touches_border=False) for i in range(n)]  # fmt: skip


def _store_with_a_cell(path, models, versions=None):
    store = ReferenceStore.create(path, models, versions=versions)
    image = store.add_image("a.png", f"hash-{path.name}", shape=(5, 5))
    embs = {m: np.ones((1, d), np.float32) for m, d in models.items()}
    store.add_cells(image, _cells(1), embs)
    return store


def test_versions_are_recorded_and_default_to_1(tmp_path):
    with ReferenceStore.create(tmp_path / "a.cellseek", {"m": 4, "n": 2}, versions={"m": 3}) as s:
        assert s.model_versions == {"m": 3, "n": 1}
    with ReferenceStore.open(tmp_path / "a.cellseek", readonly=True) as s:
        assert s.model_versions == {"m": 3, "n": 1}
    with pytest.raises(ValueError, match="does not hold"):
        ReferenceStore.create(tmp_path / "b.cellseek", {"m": 4}, versions={"x": 2})


def test_open_with_other_versions_is_refused(tmp_path):
    ReferenceStore.create(tmp_path / "a.cellseek", {"m": 4}, versions={"m": 1}).close()
    with ReferenceStore.open(tmp_path / "a.cellseek", versions={"m": 1}):
        pass
    with pytest.raises(IncompatibleStoreError) as info:
        ReferenceStore.open(tmp_path / "a.cellseek", versions={"m": 2})
    msg = str(info.value)
    assert "a.cellseek" in msg and "m version 1 in the store, version 2" in msg
    assert "cannot be mixed" in msg


def test_merge_refuses_another_version(tmp_path):
    target = _store_with_a_cell(tmp_path / "t.cellseek", {"m": 4}, {"m": 2})
    other = _store_with_a_cell(tmp_path / "o.cellseek", {"m": 4}, {"m": 1})
    other.close()
    with pytest.raises(IncompatibleStoreError, match="version 1"):
        target.merge_from(tmp_path / "o.cellseek")
    assert target.n_cells() == 1  # nothing was merged
    same = _store_with_a_cell(tmp_path / "s.cellseek", {"m": 4}, {"m": 2})
    same.close()
    assert target.merge_from(tmp_path / "s.cellseek")["cells_added"] == 1
    target.close()


def test_session_refuses_a_store_of_the_old_classical_embedder(tmp_path):
    """A store made with the classical embedder's version 1 features (no version recorded) is
    refused with a message that names the store and both versions; it is left untouched."""
    assert get_spec("classical").version == 2
    path = tmp_path / "old.cellseek"
    old = _store_with_a_cell(path, {"classical": 107})  # as cellseek made it before versions
    old.set_label(1, "neutrophil")
    old.close()
    before = path.read_bytes()
    with pytest.raises(IncompatibleStoreError) as info:
        Session.open(path)
    msg = str(info.value)
    assert str(path) in msg and "classical version 1 in the store, version 2" in msg
    with ReferenceStore.open(path, readonly=True) as s:
        assert s.classes() == {"neutrophil": 1}
    assert path.read_bytes()[:100] == before[:100]


def test_new_sessions_record_the_versions_they_compute(tmp_path):
    with Session.create(tmp_path / "new.cellseek", Config()) as session:
        assert session.store.model_versions == model_versions(session.models)
    with Session.open(tmp_path / "new.cellseek") as again:
        check_same_versions(again.store.model_versions, model_versions(again.models),
                            again.store.path)
