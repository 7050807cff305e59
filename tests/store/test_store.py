"""Unit tests of the SQLite reference store (cellseek.store.reference_store)."""

from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest

from cellseek.errors import IncompatibleStoreError, StoreError
from cellseek.store import ReferenceStore
from cellseek.store.schema import APPLICATION_ID, SCHEMA_VERSION
from cellseek.types import Cell

MODELS = {"alpha": 8, "beta": 4}


def make_cells(n: int, *, start: int = 1, t: int = 0, z: int = 0) -> list[Cell]:
    return [
        Cell(
            label=start + i,
            t=t,
            z=z,
            bbox=(i, i + 1, i + 10, i + 12),
            centroid=(i + 5.5, i + 6.25),
            area=50 + i,
            touches_border=i % 2 == 1,
        )
        for i in range(n)
    ]


def make_embeddings(n: int, models=MODELS, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in models.items()}


@pytest.fixture
def store(tmp_path):
    s = ReferenceStore.create(tmp_path / "refs.cellseek", MODELS)
    yield s
    s.close()


@pytest.fixture
def filled(store):
    """A store with one image and 10 unlabelled cells; returns (store, image_id, cell ids)."""
    image_id = store.add_image("plate/a.tif", "hash-a", device="lionheart", shape=(512, 512))
    ids = store.add_cells(
        image_id, make_cells(10), make_embeddings(10), thumbnails=[b"png%d" % i for i in range(10)]
    )
    return store, image_id, ids


# ---------------------------------------------------------------- create / open


def test_create_sets_pragmas_and_meta(tmp_path):
    path = tmp_path / "new" / "sub" / "refs.cellseek"  # missing folders are created
    with ReferenceStore.create(path, MODELS) as s:
        assert s.path == path
        assert s.models == MODELS
        assert s.schema_version == SCHEMA_VERSION
        assert s.meta("format") == "cellseek-reference-store"
        assert s.meta("created_by").startswith("cellseek ")
        conn = s._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_create_refuses_existing_unless_overwrite(store):
    store.add_image("a.tif", "h")
    store.close()
    with pytest.raises(StoreError, match="already exists"):
        ReferenceStore.create(store.path, MODELS)
    with ReferenceStore.create(store.path, {"gamma": 3}, overwrite=True) as s:
        assert s.models == {"gamma": 3}
        assert s.images() == []


def test_create_validates_models(tmp_path):
    with pytest.raises(ValueError):
        ReferenceStore.create(tmp_path / "x.cellseek", {})
    with pytest.raises(ValueError):
        ReferenceStore.create(tmp_path / "x.cellseek", {"a": 0})
    assert not (tmp_path / "x.cellseek").exists()


def test_open_roundtrip_and_model_check(filled):
    store, _, ids = filled
    store.set_label(int(ids[0]), "neutrophil")
    store.close()
    with ReferenceStore.open(store.path, models=dict(MODELS)) as s:
        assert s.cell(int(ids[0]))["label"] == "neutrophil"
    with pytest.raises(IncompatibleStoreError) as info:
        ReferenceStore.open(store.path, models={"alpha": 8, "gamma": 16})
    message = str(info.value)
    assert "alpha: 8, beta: 4" in message and "alpha: 8, gamma: 16" in message
    assert str(store.path) in message
    with pytest.raises(IncompatibleStoreError):
        ReferenceStore.open(store.path, models={"alpha": 9, "beta": 4})


def test_open_newer_schema(store):
    store._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    store.close()
    newer = rf"newer cellseek \(schema {SCHEMA_VERSION + 5} > {SCHEMA_VERSION}\); upgrade"
    with pytest.raises(IncompatibleStoreError, match=newer):
        ReferenceStore.open(store.path)


def test_open_not_a_store(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a database " * 100)
    with pytest.raises(StoreError, match="notes.txt") as info:
        ReferenceStore.open(junk)
    assert not isinstance(info.value, IncompatibleStoreError)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="other.sqlite.*not a cellseek reference store"):
        ReferenceStore.open(other)
    with pytest.raises(StoreError, match="does not exist"):
        ReferenceStore.open(tmp_path / "missing.cellseek")
    with pytest.raises(StoreError, match="folder"):
        ReferenceStore.open(tmp_path)


def test_store_usable_from_threads(filled):
    import threading

    store, _, ids = filled
    errors = []

    def work(cid: int) -> None:
        try:
            for k in range(20):
                store.set_label(cid, f"c{k}")
                store.cells()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(int(i),)) for i in ids[:4]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.classes() == {"c19": 4}
    assert len(store.audit_log()) == 80


def test_closed_store_raises(store):
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.images()


def test_readonly_store_refuses_writes(filled):
    store, _, ids = filled
    store.close()
    with ReferenceStore.open(store.path, readonly=True) as ro:
        assert ro.n_cells() == 10
        with pytest.raises(StoreError, match="read-only"):
            ro.set_label(int(ids[0]), "x")
        assert ro.embeddings("alpha").shape == (10, 8)


# ---------------------------------------------------------------- images


def test_add_image_idempotent_and_queries(store):
    a = store.add_image(
        "a.tif", "h-a", device="nanolive", source="lab 3", pixel_size_um=0.2, shape=(3, 64, 64)
    )
    b = store.add_image("b.tif", "h-b")
    assert store.add_image("copy-of-a.tif", "h-a") == a
    assert len(store.images()) == 2
    img = store.image(a)
    assert img["path"] == "a.tif" and img["device"] == "nanolive" and img["source"] == "lab 3"
    assert img["pixel_size_um"] == pytest.approx(0.2)
    assert img["shape"] == (3, 64, 64) and img["n_cells"] == 0
    assert store.image_by_hash("h-b")["id"] == b
    assert store.image_by_hash("nope") is None
    with pytest.raises(StoreError):
        store.image(999)


# ---------------------------------------------------------------- cells


def test_add_cells_and_read_back(filled):
    store, image_id, ids = filled
    assert ids.dtype == np.int64 and len(ids) == 10
    cells = store.cells(image_id)
    assert [c["id"] for c in cells] == ids.tolist()
    first = store.cell(int(ids[1]))
    assert first["image_id"] == image_id and first["label_value"] == 2
    assert first["bbox"] == (1, 2, 11, 13) and first["centroid"] == (6.5, 7.25)
    assert first["area"] == 51 and first["touches_border"] is True
    assert first["label"] is None and first["suggestion"] is None
    assert store.image(image_id)["n_cells"] == 10
    assert store.thumbnail(int(ids[3])) == b"png3"
    assert store.n_cells() == 10 and store.n_cells(labelled=True) == 0
    with pytest.raises(StoreError):
        store.cell(12345)


def test_add_cells_empty_and_thumbnails_optional(store):
    image_id = store.add_image("a.tif", "h")
    assert store.add_cells(image_id, [], make_embeddings(0)).shape == (0,)
    ids = store.add_cells(image_id, make_cells(2), make_embeddings(2))
    assert store.thumbnail(int(ids[0])) is None


def test_embeddings_float16_roundtrip_and_order(filled):
    store, image_id, ids = filled
    emb = make_embeddings(10)
    for model, dim in MODELS.items():
        got = store.embeddings(model)
        assert got.dtype == np.float32 and got.shape == (10, dim)
        np.testing.assert_allclose(got, emb[model], rtol=1e-3, atol=1e-3)
    order = [int(ids[7]), int(ids[2]), int(ids[7]), int(ids[0])]
    got = store.embeddings("beta", order)
    np.testing.assert_allclose(got, emb["beta"][[7, 2, 7, 0]], rtol=1e-3, atol=1e-3)
    assert store.embeddings("beta", []).shape == (0, 4)
    with pytest.raises(StoreError, match="gamma"):
        store.embeddings("gamma")
    with pytest.raises(StoreError, match="999"):
        store.embeddings("alpha", [999])


def test_embeddings_many_ids_chunked(store):
    image_id = store.add_image("a.tif", "h")
    n = 2000
    emb = make_embeddings(n, seed=3)
    ids = store.add_cells(image_id, make_cells(n), emb)
    rev = ids[::-1]
    np.testing.assert_allclose(store.embeddings("alpha", rev), emb["alpha"][::-1], atol=1e-2)


@pytest.mark.parametrize(
    ("embeddings", "pattern"),
    [
        ({"alpha": np.zeros((3, 8))}, "beta are missing"),
        ({**make_embeddings(3), "gamma": np.zeros((3, 2))}, "gamma are not part"),
        ({"alpha": np.zeros((3, 7)), "beta": np.zeros((3, 4))}, r"'alpha'.*\(3, 8\)"),
        ({"alpha": np.zeros((2, 8)), "beta": np.zeros((3, 4))}, r"'alpha'.*\(2, 8\)"),
        ({"alpha": np.full((3, 8), np.nan), "beta": np.zeros((3, 4))}, "'alpha'.*NaN"),
        ({"alpha": np.zeros((3, 8)), "beta": np.array([[0, 0, 0, np.inf]] * 3)}, "'beta'.*inf"),
        ({"alpha": np.full((3, 8), 1e6), "beta": np.zeros((3, 4))}, "'alpha'.*float16"),
    ],
)
def test_add_cells_rejects_bad_embeddings(store, embeddings, pattern):
    image_id = store.add_image("a.tif", "h")
    with pytest.raises(StoreError, match=pattern):
        store.add_cells(image_id, make_cells(3), embeddings)
    assert store.n_cells() == 0


def test_add_cells_duplicate_is_one_transaction(filled):
    store, image_id, _ = filled
    cells = make_cells(3, start=20) + make_cells(1, start=5)  # label 5 exists already
    with pytest.raises(StoreError, match="label value 5"):
        store.add_cells(image_id, cells, make_embeddings(4))
    assert store.n_cells() == 10  # the three new ones were rolled back too
    # same label value in another plane is a different cell
    ids = store.add_cells(image_id, make_cells(1, start=5, t=1), make_embeddings(1))
    assert store.cell(int(ids[0]))["t"] == 1
    with pytest.raises(StoreError, match="no image"):
        store.add_cells(999, make_cells(1), make_embeddings(1))
    with pytest.raises(StoreError, match="thumbnails"):
        store.add_cells(image_id, make_cells(1, start=50), make_embeddings(1), thumbnails=[])


def test_delete_cells_audited_and_cascades(filled):
    store, _, ids = filled
    store.set_label(int(ids[0]), "a")
    store.delete_cells([int(ids[0]), int(ids[1])])
    assert store.n_cells() == 8
    assert store.thumbnail(int(ids[0])) is None
    assert store.embeddings("alpha").shape == (8, 8)
    rows = [r for r in store.audit_log(int(ids[0])) if r["action"] == "delete"]
    assert rows[0]["old_label"] == "a" and rows[0]["new_label"] is None
    with pytest.raises(StoreError, match="12345"):
        store.delete_cells([int(ids[2]), 12345])
    assert store.n_cells() == 8  # nothing deleted
    # ids are never reused, so caches keyed by cell id stay valid
    new = store.add_cells(store.images()[0]["id"], make_cells(1, start=77), make_embeddings(1))
    assert new[0] > ids.max()


# ---------------------------------------------------------------- labels, audit, undo


def test_set_label_and_audit(filled):
    store, _, ids = filled
    cid = int(ids[0])
    store.set_label(cid, " neutrophil ", source="accepted", note="from suggestion")
    store.set_label(cid, "lymphocyte")
    store.set_label(cid, "lymphocyte")  # no change: no audit row, no undo step
    log = store.audit_log(cid)
    assert [(r["old_label"], r["new_label"], r["source"]) for r in log] == [
        (None, "neutrophil", "accepted"),
        ("neutrophil", "lymphocyte", "user"),
    ]
    assert log[0]["note"] == "from suggestion" and log[0]["action"] == "label"
    assert log[0]["batch_id"] != log[1]["batch_id"]
    assert log[0]["time"].endswith("+00:00")
    cell = store.cell(cid)
    assert cell["label"] == "lymphocyte" and cell["label_source"] == "user"
    assert cell["labelled_at"] is not None
    with pytest.raises(ValueError):
        store.set_label(cid, "x", source="robot")
    with pytest.raises(ValueError):
        store.set_label(cid, "  ")
    with pytest.raises(StoreError, match="no cell"):
        store.set_label(999, "x")


def test_undo_single_and_batch(filled):
    store, _, ids = filled
    a, b, c = (int(i) for i in ids[:3])
    store.set_label(a, "x")
    store.set_labels([a, b, c], ["y", "y", "z"])
    assert store.classes() == {"y": 2, "z": 1}
    batch_ids = {r["batch_id"] for r in store.audit_log() if r["action"] == "label"}
    assert len(batch_ids) == 2
    assert store.undo() == [(a, "x"), (b, None), (c, None)]
    assert store.classes() == {"x": 1}
    assert store.cell(a)["label_source"] == "user"
    assert store.undo() == [(a, None)]
    assert store.classes() == {}
    assert store.undo() is None
    undo_rows = [r for r in store.audit_log() if r["action"] == "undo"]
    assert len(undo_rows) == 4
    assert all(r["undone"] for r in store.audit_log() if r["action"] == "label")


def test_set_labels_broadcast_and_duplicates(filled):
    store, _, ids = filled
    store.set_labels(ids[:4], "blast")
    assert store.classes() == {"blast": 4}
    a = int(ids[5])
    store.set_labels([a, a], ["p", "q"])  # the last one wins; undo restores the first old label
    assert store.cell(a)["label"] == "q"
    assert store.undo() == [(a, None)]
    with pytest.raises(ValueError):
        store.set_labels(ids[:2], ["a"])


def test_clear_label_undoable(filled):
    store, _, ids = filled
    cid = int(ids[0])
    store.set_label(cid, "x", source="accepted")
    store.clear_label(cid)
    assert store.cell(cid)["label"] is None and store.cell(cid)["label_source"] is None
    assert store.audit_log(cid)[-1]["action"] == "clear"
    assert store.undo() == [(cid, "x")]
    assert store.cell(cid)["label_source"] == "accepted"


def test_undo_leaves_suggestions(filled):
    store, _, ids = filled
    store.set_suggestions(ids[:3], ["x", None, "y"], [0.9, 0.2, float("nan")])
    store.set_label(int(ids[0]), "x", source="accepted")
    store.set_suggestions(ids[:1], ["z"], [0.5])
    assert store.undo() == [(int(ids[0]), None)]
    cells = store.cells()[:3]
    assert [(c["suggestion"], c["confidence"]) for c in cells] == [
        ("z", 0.5),
        (None, pytest.approx(0.2)),
        ("y", None),
    ]
    assert store.undo() is None  # suggestions are not undo steps
    assert store.audit_log() and all(r["action"] != "suggest" for r in store.audit_log())
    with pytest.raises(StoreError, match="999"):
        store.set_suggestions([int(ids[0]), 999], ["a", "b"], [0.1, 0.2])
    assert store.cell(int(ids[0]))["suggestion"] == "z"
    with pytest.raises(ValueError):
        store.set_suggestions(ids[:2], ["a"], [0.1, 0.2])


def test_undo_skips_deleted_cells_and_deletions(filled):
    store, _, ids = filled
    store.set_labels(ids[:3], "x")
    store.delete_cells([int(ids[1])])
    assert store.undo() == [(int(ids[0]), None), (int(ids[2]), None)]
    assert store.n_cells() == 9  # the deletion itself is not undone


def test_labelled_and_n_cells(filled):
    store, _, ids = filled
    store.set_labels([int(ids[4]), int(ids[1])], ["b", "a"])
    got_ids, labels = store.labelled()
    assert got_ids.dtype == np.int64
    assert got_ids.tolist() == [int(ids[1]), int(ids[4])] and labels == ["a", "b"]
    assert store.n_cells(labelled=True) == 2 and store.n_cells(labelled=False) == 8
    assert [c["id"] for c in store.cells(labelled=True)] == got_ids.tolist()
    assert len(store.cells(labelled=False)) == 8


def test_rename_and_merge_classes_undoable(filled):
    store, _, ids = filled
    store.set_labels(ids[:6], ["a", "a", "b", "c", "c", "c"])
    store.set_label(int(ids[0]), "a2", source="accepted")
    store.set_label(int(ids[0]), "a")  # source now user
    store.set_label(int(ids[1]), "a", source="accepted")
    store.rename_class("a", "alpha")
    assert store.classes() == {"alpha": 2, "b": 1, "c": 3}
    assert store.cell(int(ids[1]))["label_source"] == "accepted"  # source kept
    with pytest.raises(StoreError, match="already exists"):
        store.rename_class("b", "c")
    with pytest.raises(StoreError, match="no class"):
        store.rename_class("zzz", "y")
    store.merge_classes(["b", "c"], into="alpha")
    assert store.classes() == {"alpha": 6}
    rows = [r for r in store.audit_log() if r["action"] == "merge_classes"]
    assert len(rows) == 4 and len({r["batch_id"] for r in rows}) == 1
    with pytest.raises(StoreError, match="no class 'q'"):
        store.merge_classes(["q"], into="alpha")
    restored = store.undo()
    assert sorted(lab for _, lab in restored) == ["b", "c", "c", "c"]
    assert store.classes() == {"alpha": 2, "b": 1, "c": 3}
    assert len(store.undo()) == 2
    assert store.classes() == {"a": 2, "b": 1, "c": 3}


def test_audit_log_filters_by_cell(filled):
    store, _, ids = filled
    store.set_labels(ids[:3], "x")
    assert len(store.audit_log()) == 3
    assert [r["cell_id"] for r in store.audit_log(int(ids[2]))] == [int(ids[2])]


# ---------------------------------------------------------------- weights, meta


def test_model_weights(store):
    assert store.model_weights() is None
    store.set_model_weights({"alpha": 0.7, "beta": 0.3})
    assert store.model_weights() == pytest.approx({"alpha": 0.7, "beta": 0.3})
    with pytest.raises(StoreError, match="one weight per model"):
        store.set_model_weights({"alpha": 1.0})
    with pytest.raises(ValueError):
        store.set_model_weights({"alpha": float("nan"), "beta": 1.0})


def test_meta(store):
    assert store.meta("crop", default={}) == {}
    store.set_meta("crop", {"margin": 0.25, "size": 128})
    store.set_meta("crop", {"margin": 0.5, "size": 128})
    assert store.meta("crop") == {"margin": 0.5, "size": 128}
    store.set_meta("raw", json.dumps([1, 2]))  # a JSON string round-trips as a string
    assert json.loads(store.meta("raw")) == [1, 2]
    with pytest.raises(ValueError):
        store.set_meta("format", "x")


# ---------------------------------------------------------------- merge


def _second_store(tmp_path, models=MODELS):
    """Another store sharing image hash-a (cells 1-5 of it) and holding a new image."""
    other = ReferenceStore.create(tmp_path / "other.cellseek", models)
    shared = other.add_image("elsewhere/a.tif", "hash-a")
    ids_shared = other.add_cells(shared, make_cells(5), make_embeddings(5, models))
    new = other.add_image("b.tif", "hash-b", device="nanolive")
    emb_new = make_embeddings(4, models, seed=9)
    ids_new = other.add_cells(new, make_cells(4), emb_new, thumbnails=[b"t"] * 4)
    return other, ids_shared, ids_new, emb_new


def test_merge_from_dedups_and_imports(filled, tmp_path):
    store, image_id, ids = filled
    store.set_label(int(ids[0]), "mine")  # conflict: other says "theirs"
    store.set_label(int(ids[1]), "same")  # same label in both
    other, ids_shared, ids_new, emb_new = _second_store(tmp_path)
    other.set_labels(ids_shared[:3], ["theirs", "same", "new-here"])
    other.set_labels(ids_new[:2], ["b1", "b2"])
    other.close()
    counts = store.merge_from(other.path)
    assert counts == {
        "images_added": 1,
        "images_matched": 1,
        "cells_added": 4,
        "cells_matched": 5,
        "labels_added": 3,
        "labels_unchanged": 1,
        "label_conflicts": 1,
    }
    assert len(store.images()) == 2 and store.n_cells() == 14
    assert store.cell(int(ids[0]))["label"] == "mine"
    assert store.cell(int(ids[2]))["label"] == "new-here"
    assert store.cell(int(ids[2]))["label_source"] == "import"
    b_id = store.image_by_hash("hash-b")["id"]
    new_cells = store.cells(b_id)
    assert [c["label"] for c in new_cells] == ["b1", "b2", None, None]
    assert {c["label_source"] for c in new_cells[:2]} == {"import"}
    new_ids = [c["id"] for c in new_cells]
    np.testing.assert_allclose(store.embeddings("alpha", new_ids), emb_new["alpha"], atol=1e-2)
    assert store.thumbnail(new_ids[0]) == b"t"
    assert {r["action"] for r in store.audit_log()} == {"label", "import"}
    # merging again changes nothing
    again = store.merge_from(ReferenceStore.open(other.path, readonly=True))
    assert again["cells_added"] == 0 and again["labels_added"] == 0
    assert again["labels_unchanged"] == 4


def test_merge_labels_only(filled, tmp_path):
    store, _, ids = filled
    other, ids_shared, ids_new, _ = _second_store(tmp_path, models={"other": 3})
    other.set_labels([int(ids_shared[4]), int(ids_new[0])], ["p", "q"])
    counts = store.merge_from(other, labels_only=True)  # model sets need not match
    other.close()
    assert counts["cells_added"] == 0 and counts["images_added"] == 0
    assert counts["labels_added"] == 1
    assert store.classes() == {"p": 1} and store.cell(int(ids[4]))["label_source"] == "import"


def test_merge_incompatible_models(filled, tmp_path):
    store, _, _ = filled
    other, *_ = _second_store(tmp_path, models={"alpha": 8, "beta": 5})
    with pytest.raises(IncompatibleStoreError) as info:
        store.merge_from(other)
    assert "beta: 4" in str(info.value) and "beta: 5" in str(info.value)
    assert store.n_cells() == 10
    with pytest.raises(StoreError, match="itself"):
        store.merge_from(store.path)


def test_merge_superset_models_is_compatible(filled, tmp_path):
    store, _, _ = filled
    other, *_ = _second_store(tmp_path, models={**MODELS, "extra": 2})
    counts = store.merge_from(other)
    assert counts["cells_added"] == 4
    assert store.embeddings("beta").shape == (14, 4)


# ---------------------------------------------------------------- export, backup


def test_export_cells_csv(filled, tmp_path):
    store, image_id, ids = filled
    store.set_label(int(ids[0]), "x", source="accepted")
    store.set_suggestions(ids[1:2], ["y"], [0.75])
    store.set_suggestions(ids[2:3], [None], [0.4], best_labels=["z"])  # uncertain
    store.set_plane_labels(image_id, 0, 0, np.ones((4, 4), np.int32))
    other = store.add_image("b.tif", "hash-b")
    store.add_cells(other, make_cells(2), make_embeddings(2))
    out = tmp_path / "out" / "cells.csv"
    assert store.export_cells_csv(out) == 12
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "cell_id",
        "image_id",
        "image",
        "image_hash",
        "t",
        "z",
        "label_value",
        "label_image",
        "centroid_row",
        "centroid_col",
        "area",
        "class",
        "class_source",
        "state",
        "suggestion",
        "confidence",
        "best_guess",
    ]
    assert rows[0]["cell_id"] == str(ids[0]) and rows[0]["image"] == "plate/a.tif"
    assert rows[0]["image_id"] == str(image_id) and rows[0]["t"] == "0"
    assert rows[0]["image_hash"] == "hash-a" and rows[0]["class"] == "x"
    assert rows[0]["class_source"] == "accepted" and rows[0]["centroid_row"] == "5.5"
    assert rows[0]["area"] == "50" and rows[0]["suggestion"] == ""
    assert rows[0]["label_image"] == "a_t0_z0_labels.tif"  # after plate/a.tif and its plane
    assert [r["state"] for r in rows[:4]] == ["confirmed", "suggested", "uncertain", "unlabelled"]
    assert rows[1]["suggestion"] == "y" and float(rows[1]["confidence"]) == 0.75
    assert rows[1]["best_guess"] == "y"  # best_labels default to the suggestions
    assert rows[2]["suggestion"] == "" and rows[2]["best_guess"] == "z"
    assert float(rows[2]["confidence"]) == 0.4
    assert rows[10]["label_image"] == ""  # image b has no stored label image
    assert store.export_cells_csv(out, image_id=other) == 2  # replaces the file
    with open(out, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert [p.name for p in out.parent.iterdir()] == ["cells.csv"]


def test_export_cells_csv_escapes_formulas(filled, tmp_path):
    store, _, ids = filled
    labels = ["=HYPERLINK(\"http://x\")", "+1", "-cmd", "@SUM(A1)", "CD4+", "ok"]
    for cid, lab in zip(ids, labels):
        store.set_label(int(cid), lab)
    store.set_suggestions(ids[8:], ["=1", "@x"], [0.9, 0.9])
    out = tmp_path / "cells.csv"
    store.export_cells_csv(out)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = [r["class"] for r in rows][: len(labels)]
    assert got == ["'=HYPERLINK(\"http://x\")", "'+1", "'-cmd", "'@SUM(A1)", "CD4+", "ok"]
    assert [r["suggestion"] for r in rows[8:]] == ["'=1", "'@x"]
    with open(out, newline="") as fh:
        first = next(csv.DictReader(fh))
    assert float(first["centroid_row"]) == 5.5  # numbers are never escaped


def test_backup_is_consistent_copy(filled, tmp_path):
    store, _, ids = filled
    store.set_label(int(ids[0]), "x")
    dest = store.backup(tmp_path / "backups" / "copy.cellseek")
    store.set_label(int(ids[1]), "y")  # after the backup
    with ReferenceStore.open(dest, models=MODELS) as copy:
        assert copy.classes() == {"x": 1}
        assert copy.n_cells() == 10
        assert copy._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------- migration

V1_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (name TEXT PRIMARY KEY, dim INTEGER NOT NULL);
CREATE TABLE images (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL,
    content_hash TEXT NOT NULL UNIQUE, device TEXT NOT NULL DEFAULT 'unknown',
    pixel_size_um REAL, added_at TEXT NOT NULL);
CREATE TABLE cells (id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    label_value INTEGER NOT NULL, t INTEGER NOT NULL DEFAULT 0, z INTEGER NOT NULL DEFAULT 0,
    bbox_row_min INTEGER NOT NULL, bbox_col_min INTEGER NOT NULL, bbox_row_max INTEGER NOT NULL,
    bbox_col_max INTEGER NOT NULL, centroid_row REAL NOT NULL, centroid_col REAL NOT NULL,
    area INTEGER NOT NULL, touches_border INTEGER NOT NULL DEFAULT 0, label TEXT,
    label_source TEXT, suggestion TEXT, confidence REAL, UNIQUE (image_id, t, z, label_value));
CREATE TABLE embeddings (cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
    model TEXT NOT NULL REFERENCES models(name), vector BLOB NOT NULL,
    PRIMARY KEY (model, cell_id)) WITHOUT ROWID;
CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, cell_id INTEGER NOT NULL,
    old_label TEXT, new_label TEXT, source TEXT, time TEXT NOT NULL);
"""


def _write_v1_store(path):
    conn = sqlite3.connect(path)
    conn.executescript(V1_SQL)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta VALUES ('format', '\"cellseek-reference-store\"')")
    conn.executemany("INSERT INTO models VALUES (?, ?)", [("alpha", 2)])
    conn.execute("INSERT INTO images (path, content_hash, added_at) VALUES ('a.tif', 'h', 'now')")
    vec = np.array([0.5, -1.0], dtype="<f2").tobytes()
    for value, label in [(1, "x"), (2, None), (3, "y")]:
        conn.execute(
            "INSERT INTO cells (image_id, label_value, bbox_row_min, bbox_col_min, bbox_row_max, "
            "bbox_col_max, centroid_row, centroid_col, area, label, label_source) "
            "VALUES (1, ?, 0, 0, 4, 4, 2, 2, 16, ?, ?)",
            (value, label, label and "user"),
        )
        conn.execute("INSERT INTO embeddings VALUES (?, 'alpha', ?)", (value, vec))
    conn.executemany(
        "INSERT INTO audit (cell_id, old_label, new_label, source, time) VALUES (?, ?, ?, ?, ?)",
        [(1, None, "x", "user", "t1"), (3, None, "z", "user", "t2"), (3, "z", "y", "user", "t3")],
    )
    conn.commit()
    conn.close()


def test_migrate_v1(tmp_path):
    path = tmp_path / "old.cellseek"
    _write_v1_store(path)
    with ReferenceStore.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.models == {"alpha": 2}
        assert s.classes() == {"x": 1, "y": 1}
        np.testing.assert_array_equal(s.embeddings("alpha"), [[0.5, -1.0]] * 3)
        log = s.audit_log(3)
        assert [(r["old_label"], r["new_label"], r["time"]) for r in log] == [
            (None, "z", "t2"),
            ("z", "y", "t3"),
        ]
        assert s.image(1)["shape"] == () and s.image(1)["source"] == ""
        assert s.model_weights() is None
        assert s.undo() is None  # migrated history is not undoable
        s.set_label(2, "w")  # the new schema works
        assert s.undo() == [(2, None)]
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert s._conn.execute("PRAGMA foreign_key_check").fetchall() == []
    backup = tmp_path / "old.cellseek.schema1.bak"
    conn = sqlite3.connect(backup)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 3
    conn.close()


def test_migration_needs_writable_open(tmp_path):
    path = tmp_path / "old.cellseek"
    _write_v1_store(path)
    with pytest.raises(StoreError, match="schema 1 and needs an upgrade"):
        ReferenceStore.open(path, readonly=True)


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    from cellseek.store import schema as store_schema

    path = tmp_path / "old.cellseek"
    _write_v1_store(path)

    def broken(conn):
        conn.execute("ALTER TABLE models ADD COLUMN weight REAL")
        raise sqlite3.OperationalError("simulated failure half way")

    monkeypatch.setitem(store_schema.MIGRATIONS, 1, broken)
    with pytest.raises(StoreError, match="upgrading schema 1"):
        ReferenceStore.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "weight" not in [r[1] for r in conn.execute("PRAGMA table_info(models)")]
    conn.close()


def test_plane_labels_round_trip_and_merge(tmp_path):
    from cellseek.store import ReferenceStore

    labels = np.zeros((40, 50), np.int32)
    labels[5:10, 5:10] = 3
    labels[20:30, 30:45] = 70000  # needs more than 16 bits
    with ReferenceStore.create(tmp_path / "a.cellseek", {"m": 2}) as store:
        image_id = store.add_image("a.tif", "h" * 64)
        store.set_plane_labels(image_id, 0, 1, labels)
        got = store.plane_labels(image_id)
        assert list(got) == [(0, 1)]
        np.testing.assert_array_equal(got[(0, 1)], labels)
        with pytest.raises(ValueError):
            store.set_plane_labels(image_id, 0, 0, labels.astype(float))
    with ReferenceStore.create(tmp_path / "b.cellseek", {"m": 2}) as other:
        other.merge_from(tmp_path / "a.cellseek")
        merged = other.plane_labels(other.image_by_hash("h" * 64)["id"])
        np.testing.assert_array_equal(merged[(0, 1)], labels)


def test_schema_3_store_reads_read_only_and_upgrades_writable(filled, tmp_path):
    store, image_id, ids = filled
    store.set_label(int(ids[0]), "x")
    store.set_suggestions(ids[1:2], ["y"], [0.8])
    path = store.path
    store.close()
    conn = sqlite3.connect(path)  # what a store of cellseek with schema 3 looks like
    conn.execute("ALTER TABLE cells DROP COLUMN best_label")
    conn.execute("DROP TABLE search_arrays")
    conn.execute("DROP TABLE search_state")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with ReferenceStore.open(path, readonly=True) as old:
        assert old.schema_version == 3
        assert old.cell(int(ids[1]))["suggestion"] == "y"
        assert old.cell(int(ids[1]))["best_label"] is None
        assert old.export_cells_csv(tmp_path / "cells.csv") == 10
        assert old.check() == []
    with open(tmp_path / "cells.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[1]["best_guess"] == "y" and rows[1]["state"] == "suggested"
    assert not (tmp_path / "refs.cellseek.schema3.bak").exists()  # read-only: no upgrade
    with ReferenceStore.open(path) as new:
        assert new.schema_version == SCHEMA_VERSION == 5
        assert new.search_state() is None
        new.set_suggestions(ids[2:3], [None], [0.3], best_labels=["z"])
        assert new.cell(int(ids[2]))["best_label"] == "z"
        assert new.classes() == {"x": 1}
    assert (tmp_path / "refs.cellseek.schema3.bak").exists()
