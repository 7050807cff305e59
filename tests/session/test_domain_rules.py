"""The domain rules of Session (classes and keys, accept, re-segment, restore): no Qt needed."""

from __future__ import annotations

import numpy as np
import pytest

from _shared import synthetic_field
from cellseek.annotation.classes import ClassInfo, ordered_classes
from cellseek.annotation.colours import PALETTE
from cellseek.errors import CellseekError
from cellseek.session import Session
from cellseek.types import ImageData, Suggestion, run_work


def _image(seed, path=None):
    rgb, labels, classes = synthetic_field(seed)
    return ImageData(rgb, "YXS", path=path or f"synthetic{seed}.png", device="test"), labels, \
        classes


@pytest.fixture
def session(tmp_path):
    s = Session.create(tmp_path / "ref.cellseek")
    yield s
    s.close()


def _add(session, seed, *, label=False):
    img, labels, classes = _image(seed)
    image_id = run_work(session.add_image(img, labels={(0, 0): labels}))
    cells = session.store.cells(image_id)
    if label:
        session.label([c["id"] for c in cells], [classes[c["label_value"]] for c in cells])
    return image_id, cells, classes


def test_ordered_classes_appends_new_classes_by_first_appearance():
    assert ordered_classes(["b", "a"], {"a": 1, "c": 3, "d": 2}, {"c": 10, "d": 5}) == [
        "b", "a", "d", "c"]
    assert ordered_classes([], ["z", "y"]) == ["y", "z"]  # no history: by name


def test_class_keys_follow_creation_order_and_never_renumber(session):
    session.add_class("zebra")  # created first, no cell yet
    _add(session, 0, label=True)  # the cells bring "red" (value 1) before "blue" (value 2)
    infos = session.classes()
    assert [(c.name, c.key, c.count) for c in infos] == [
        ("zebra", 1, 0), ("red", 2, 4), ("blue", 3, 4)]
    assert all(isinstance(c, ClassInfo) for c in infos)
    assert [c.colour for c in infos] == list(PALETTE[:3])
    # adding a class (also one that sorts first by name) appends it: nothing else moves
    session.add_class("aardvark")
    assert session.class_names() == ["zebra", "red", "blue", "aardvark"]
    assert session.class_for_key(2) == "red" and session.class_for_key(4) == "aardvark"
    with pytest.raises(CellseekError, match="no class 5"):
        session.class_for_key(5)
    with pytest.raises(CellseekError, match="needs a name"):
        session.add_class("  ")
    # the order and the colours are saved with the reference set
    path = session.store.path
    colours = session.class_colours()
    session.close()
    with Session.open(path) as again:
        assert again.class_names() == ["zebra", "red", "blue", "aardvark"]
        assert again.class_colours() == colours


def test_classes_of_a_store_without_saved_order_come_in_first_labelled_order(tmp_path):
    s = Session.create(tmp_path / "cli.cellseek")
    image_id, cells, _ = _add(s, 0)
    s.label([cells[0]["id"]], ["zulu"])      # labelled first
    s.label([cells[1]["id"]], ["alpha"])
    assert s.class_names() == ["zulu", "alpha"]
    s.close()


def test_rename_keeps_key_and_colour_merge_removes_sources(session):
    _add(session, 0, label=True)
    session.add_class("extra")
    before = session.classes()
    session.rename_class("red", "crimson")
    after = session.classes()
    assert [c.name for c in after] == ["crimson", "blue", "extra"]
    assert after[0].colour == before[0].colour and after[0].count == 4
    assert session.store.classes() == {"crimson": 4, "blue": 4}
    with pytest.raises(CellseekError, match="exists already"):
        session.rename_class("blue", "crimson")
    session.merge_classes(["crimson", "extra"], "blue")
    assert [(c.name, c.key, c.count) for c in session.classes()] == [("blue", 1, 8)]
    session.merge_classes(["blue"], "cell")  # a new name takes the first source's place
    assert [(c.name, c.count) for c in session.classes()] == [("cell", 8)]
    assert session.undo()  # the store's undo puts the merge back
    assert session.store.classes() == {"blue": 8}


def test_accept_suggestions_above_threshold_and_best_guess(session):
    _add(session, 0, label=True)
    image_id, query, _ = _add(session, 1)
    ids = [c["id"] for c in query]
    fake = {ids[0]: Suggestion("red", 0.9, 0.1, best_label="red"),
            ids[1]: Suggestion(None, 0.4, 0.9, best_label="blue"),
            ids[2]: Suggestion(None, 0.0, 0.0)}
    assert session.accept_suggestions(fake, threshold=0.6) == {ids[0]: "red"}
    assert session.cell(ids[0])["label"] == "red"
    assert session.cell(ids[0])["label_source"] == "accepted"
    # without a threshold every best guess is accepted; confirmed cells are left alone
    assert session.accept_suggestions(fake) == {ids[1]: "blue"}
    assert session.undo() and session.cell(ids[1])["label"] is None
    # accept_best asks the index for the current best guess
    best = session.suggest_cells([ids[3]])[0].best_label
    assert session.accept_best([ids[3], ids[0]]) == {ids[3]: best}


def test_clear_planes_keeps_planes_with_confirmed_labels(session):
    img = np.zeros((3, 64, 64), np.uint8)
    labels = {}
    for t in range(3):
        lab = np.zeros((64, 64), np.int32)
        lab[10:30, 10:30], lab[35:55, 35:55] = 1, 2
        labels[(t, 0)] = lab
        img[t][lab > 0] = 200
    image = ImageData(img, "TYX", path="stack.tif", device="test")
    image_id = run_work(session.add_image(image, labels=labels))
    cells = session.image_cells(image_id)
    assert len(cells) == 6
    in_t1 = [c["id"] for c in cells if c["t"] == 1]
    session.label([in_t1[0]], ["x"])
    kept = session.clear_planes(image_id, [(0, 0), (1, 0)])
    assert kept == [(1, 0)]
    left = session.image_cells(image_id)
    assert sorted({c["t"] for c in left}) == [1, 2] and len(left) == 4
    assert not session.plane_labels(image_id)[(0, 0)].any()  # no stale label image left
    assert not session.store.plane_labels(image_id)[(0, 0)].any()
    np.testing.assert_array_equal(session.plane_labels(image_id)[(1, 0)], labels[(1, 0)])
    # the cleared plane can be embedded again from new labels
    run_work(session.add_image(image, labels={(0, 0): labels[(0, 0)]}))
    assert len(session.image_cells(image_id)) == 6


def test_restore_image_finds_the_image_by_content(session, tmp_path):
    image_id, cells, _ = _add(session, 0)
    img, labels, _ = _image(0, path="elsewhere/renamed.png")  # same pixels, other path
    restored = session.restore_image(img)
    assert restored.image_id == image_id and len(restored.cells) == len(cells)
    np.testing.assert_array_equal(restored.planes[(0, 0)], labels)
    assert session.restore_image(_image(5)[0]) is None
    assert session.find_image(img) == image_id and session.image_path(image_id) == \
        "synthetic0.png"


def test_import_reference_merges_and_refreshes(session, tmp_path):
    other = Session.create(tmp_path / "other.cellseek")
    _add(other, 3, label=True)
    other.close()
    assert session.import_reference(tmp_path / "other.cellseek")
    assert session.store.classes() == {"red": 4, "blue": 4}
    assert len(session.index()) == 8  # the index sees the merged labels
    summary = session.summary()
    assert summary["n_cells"] == 8 and summary["n_labelled"] == 8
    assert summary["models"] == ("classical",)


def test_session_map_is_drawn_in_the_search_space(tmp_path):
    """The Plots panel's map: the session's fused vectors (PCA when configured), not raw
    store embeddings."""
    from dataclasses import replace

    from cellseek.annotation.embedding_map import embedding_map, session_map
    from cellseek.config import Config, IndexConfig

    s = Session.create(tmp_path / "pca.cellseek",
                       replace(Config(), index=IndexConfig(pca_components=4)))
    _add(s, 0, label=True)
    _add(s, 1)
    data = session_map(s)
    assert len(data.ids) == 16 and data.xy.shape == (16, 2)
    assert s.fused_vectors(data.ids).shape[1] == 4  # the reduced space of the index
    np.testing.assert_allclose(data.xy, embedding_map(s.fused_vectors(data.ids)), atol=1e-5)
    raw = embedding_map(s.store.embeddings("classical", data.ids))
    assert not np.allclose(np.abs(raw), np.abs(data.xy), atol=1e-3)
    assert data.labels.count(None) == 8
    few = session_map(s, max_cells=5)
    assert len(few.ids) == 5 and set(few.ids) <= set(data.ids)
    s.close()


def test_create_over_stale_wal_files_starts_empty(tmp_path):
    """A store file deleted by hand leaves its -wal/-shm behind; a new store at that path must
    not read them (the old cells came back, then "database disk image is malformed")."""
    import shutil

    path = tmp_path / "ref.cellseek"
    s = Session.create(path)
    _add(s, 0)
    for suffix in ("-wal", "-shm"):
        shutil.copy(f"{path}{suffix}", tmp_path / f"kept{suffix}")
    s.close()
    path.unlink()
    for suffix in ("-wal", "-shm"):
        shutil.copy(tmp_path / f"kept{suffix}", f"{path}{suffix}")
    with Session.create(path) as fresh:
        assert fresh.store.n_cells() == 0
        _add(fresh, 1)
        assert fresh.store.n_cells() == 8
