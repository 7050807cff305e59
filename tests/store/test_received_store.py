"""A store from another lab is untrusted input: crafted stores are refused, bounded, or repaired.

Each test crafts a store the way an attacker (or a broken tool) would, with plain SQL on a real
store, and checks what cellseek does with it: open, export, merge, suggest.
"""

from __future__ import annotations

import io
import json
import sqlite3
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from cellseek.cli.main import main
from cellseek.config import Config, CropConfig, EmbedConfig, Limits
from cellseek.errors import IncompatibleStoreError, StoreError
from cellseek.session import Session
from cellseek.store import ReferenceStore
from cellseek.store.blobs import BlobError, check_labels_blob, decode_labels
from cellseek.types import Cell

MODELS = {"alpha": 8, "beta": 4}


def _cells(n: int) -> list[Cell]:
    return [Cell(label=i + 1, bbox=(i, i, i + 4, i + 4), centroid=(i + 2.0, i + 2.0), area=16)
            for i in range(n)]


def _store(path: Path, *, image_hash: str = "hash-a", labels=("x", "y", None)) -> Path:
    rng = np.random.default_rng(0)
    with ReferenceStore.create(path, MODELS) as s:
        image_id = s.add_image("a.tif", image_hash)
        ids = s.add_cells(image_id, _cells(len(labels)),
                          {m: rng.normal(size=(len(labels), d)).astype(np.float32)
                           for m, d in MODELS.items()})
        s.set_plane_labels(image_id, 0, 0, np.arange(1, 17, dtype=np.int32).reshape(4, 4) % 4)
        for cid, lab in zip(ids, labels):
            if lab is not None:
                s.set_label(int(cid), lab)
    return path


def _sql(path: Path, *statements, params=()) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement, params)
    conn.commit()
    conn.close()


# ------------------------------------------------------------------------ path traversal


@pytest.mark.parametrize("bad_t", ["'../../../evil'", "'0/../../x'", "1e12", "-1", "2.5"])
def test_plane_index_that_is_not_a_small_integer_is_refused(tmp_path, capsys, bad_t):
    store = _store(tmp_path / "crafted.cellseek")
    _sql(store, f"UPDATE planes SET t = {bad_t}")
    with pytest.raises(StoreError, match=r"refused: .*planes row 1: t is not an integer"):
        ReferenceStore.open(store, readonly=True)
    out = tmp_path / "export" / "sub"
    assert main(["export", "--store", str(store), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written anywhere
    assert [p.name for p in tmp_path.rglob("*") if p.suffix == ".tif"] == []
    target = _store(tmp_path / "mine.cellseek", image_hash="hash-b")
    with ReferenceStore.open(target) as mine, pytest.raises(StoreError, match="refused"):
        mine.merge_from(store)  # merging validates the other store the same way


@pytest.mark.parametrize(("path", "name"), [
    ("a.tif", "a_t0_z0_labels.tif"),
    ("../../../evil.tif", "evil_t0_z0_labels.tif"),
    ("C:\\Users\\x\\..\\smear 01.ome.tif", "smear_01_t0_z0_labels.tif"),
    ("/etc/passwd", "passwd_t0_z0_labels.tif"),
    ("..", "image1_t0_z0_labels.tif"),
    (".bashrc", "bashrc_t0_z0_labels.tif"),
    ("CON.tif", "CON_image1_t0_z0_labels.tif"),
    ("x" * 300 + ".tif", "x" * 120 + "_t0_z0_labels.tif"),
])
def test_export_builds_label_image_names_safely_inside_the_folder(tmp_path, path, name):
    store = _store(tmp_path / "ref.cellseek")
    _sql(store, "UPDATE images SET path = ?", params=(path,))
    out = tmp_path / "export"
    with ReferenceStore.open(store, readonly=True) as s:
        paths = s.export_folder(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(["cells.csv", name, "ref.cellseek"])
    assert all(p.resolve().parent == out.resolve() for p in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "ref.cellseek"]


# ------------------------------------------------------------------------ triggers and views


TRIGGER = ("CREATE TRIGGER hijack AFTER UPDATE OF label ON cells BEGIN "
           "UPDATE cells SET label = 'hacked' WHERE label IS NOT NULL; DELETE FROM audit; END")


def test_store_with_a_trigger_is_refused_and_repair_removes_it(tmp_path, capsys):
    store = _store(tmp_path / "crafted.cellseek")
    _sql(store, TRIGGER, "CREATE VIEW everything AS SELECT * FROM cells")
    for readonly in (False, True):
        with pytest.raises(StoreError) as info:
            ReferenceStore.open(store, readonly=readonly)
        message = str(info.value)
        assert "trigger 'hijack'" in message and "view 'everything'" in message
        assert "cellseek check --repair" in message and "\n" not in message
    target = _store(tmp_path / "mine.cellseek", image_hash="hash-b")
    with ReferenceStore.open(target) as mine, pytest.raises(StoreError, match="hijack"):
        mine.merge_from(store)
    assert main(["check", str(store)]) == 1
    assert main(["check", str(store), "--repair"]) == 0
    capsys.readouterr()
    assert (tmp_path / "crafted.cellseek.repair.bak").exists()
    with ReferenceStore.open(store) as s:
        s.set_label(3, "z")  # the trigger would have rewritten every label and the audit log
        assert s.classes() == {"x": 1, "y": 1, "z": 1}
        assert len(s.audit_log()) == 3
        names = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
        assert "hijack" not in names and "everything" not in names


def test_without_the_check_the_trigger_would_rewrite_labels(tmp_path):
    """The attack is real: SQLite runs the stored trigger on an ordinary label write."""
    store = _store(tmp_path / "crafted.cellseek")
    _sql(store, TRIGGER)
    conn = sqlite3.connect(store)
    conn.execute("UPDATE cells SET label = 'z', label_source = 'user' WHERE id = 3")
    assert {r[0] for r in conn.execute("SELECT label FROM cells")} == {"hacked"}
    conn.close()


def test_extra_tables_and_missing_columns_are_refused(tmp_path):
    store = _store(tmp_path / "a.cellseek")
    _sql(store, "CREATE TABLE notes (x)")
    with pytest.raises(StoreError, match="table 'notes'"):
        ReferenceStore.open(store)
    store = _store(tmp_path / "b.cellseek")
    _sql(store, "ALTER TABLE cells DROP COLUMN best_label")
    with pytest.raises(StoreError, match="damaged or was not made by cellseek: table 'cells'"):
        ReferenceStore.open(store)


# ------------------------------------------------------------------------ machine-local settings


def test_saved_config_never_overrides_machine_local_settings(tmp_path):
    path = tmp_path / "ref.cellseek"
    with Session.create(path, Config(embed=EmbedConfig(preset="offline"))):
        pass
    with ReferenceStore.open(path) as s:
        saved = json.loads(s.meta("config"))
        saved["embed"].update(weights_dir="/their/lab/weights", device="cuda", batch_size=4096)
        s.set_meta("config", json.dumps(saved))
    mine = Config(embed=EmbedConfig(preset="offline", weights_dir=str(tmp_path / "w"),
                                    device="cpu", batch_size=8))
    with Session.open(path, mine) as session:
        assert session.config.embed.weights_dir == str(tmp_path / "w")
        assert session.config.embed.device == "cpu" and session.config.embed.batch_size == 8
        assert session.config.embed.models == ("classical",)  # the model set does come from it


@pytest.mark.parametrize(("crop", "match"), [
    ({"size": 100_000}, "crop size must be an integer from 8 to 1024"),
    ({"size": 128, "future_setting": 1}, "unexpected keyword argument 'future_setting'"),
    ({"margin": "wide"}, "crop margin must be a number"),
])
def test_bad_or_newer_saved_settings_give_one_clear_line(tmp_path, capsys, crop, match):
    path = tmp_path / "ref.cellseek"
    with Session.create(path, Config(embed=EmbedConfig(preset="offline"))):
        pass
    with ReferenceStore.open(path) as s:
        saved = json.loads(s.meta("config"))
        saved["crop"] = crop
        s.set_meta("config", json.dumps(saved))
    with pytest.raises(StoreError, match=match) as info:
        Session.open(path)
    assert "saved settings are malformed or were made by a newer cellseek" in str(info.value)
    assert main(["suggest", "--store", str(path), "-q"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "ref.cellseek" in err
    with ReferenceStore.open(path) as s:
        s.set_meta("config", "{not json")
    with pytest.raises(StoreError, match="malformed"):
        Session.open(path)


# ------------------------------------------------------------------------ memory bombs


def _header_bytes(shape, dtype) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 1), dtype))  # a valid header to patch the shape into
    raw = buf.getvalue()
    length = struct.unpack("<H", raw[8:10])[0]
    text = raw[10 : 10 + length].decode("latin1").replace("(1, 1)", repr(tuple(shape)))
    text = text.rstrip("\n").rstrip() + " "
    pad = (64 - (10 + len(text) + 1) % 64) % 64
    text = text + " " * pad + "\n"
    return raw[:8] + struct.pack("<H", len(text)) + text.encode("latin1")


def test_label_image_bomb_is_refused_without_inflating(tmp_path, capsys):
    # 3.2 GB of label image declared; the blob holds its header and 3 MB of zeros.
    header = _header_bytes((40_000, 40_000), "<u2")
    bomb = zlib.compress(header + bytes(3_000_000), 9)
    with pytest.raises(BlobError, match="40000 x 40000 pixels is larger than the limit"):
        decode_labels(bomb)
    # A header that lies small: decompression stops one byte past what it declares.
    liar = zlib.compress(_header_bytes((10, 10), "<u2") + bytes(50_000_000), 9)
    tracemalloc.start()
    with pytest.raises(BlobError, match="more data than its header declares"):
        decode_labels(liar)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000  # never anywhere near the 50 MB inside
    assert check_labels_blob(zlib.compress(_header_bytes((3, 5), "<u2") + bytes(30))) == (3, 5)
    store = _store(tmp_path / "crafted.cellseek")
    _sql(store, "UPDATE planes SET labels = ?", params=(bomb,))
    out = tmp_path / "out"
    assert main(["export", "--store", str(store), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "larger than the limit" in err and len(err.strip().splitlines()) == 1
    with ReferenceStore.open(store, readonly=True) as s:
        assert any("larger than the limit" in p for p in s.check())
    target = _store(tmp_path / "mine.cellseek", image_hash="hash-b")
    with ReferenceStore.open(target) as mine, pytest.raises(StoreError, match="nothing was merged"):
        mine.merge_from(store)
    with ReferenceStore.open(target, readonly=True) as mine:
        assert len(mine.images()) == 1  # the merge rolled back


def test_label_images_within_a_raised_limit_decode(tmp_path):
    header = _header_bytes((2000, 2000), "<u2")
    blob = zlib.compress(header + bytes(8_000_000))
    with pytest.raises(BlobError, match="larger than the limit"):
        decode_labels(blob, Limits(max_plane_pixels=1_000_000))
    assert decode_labels(blob, Limits(max_plane_pixels=4_000_000)).shape == (2000, 2000)


def test_nan_and_malformed_embeddings_are_never_used(tmp_path):
    store = _store(tmp_path / "crafted.cellseek")
    nan = np.full(8, np.nan, "<f2").tobytes()
    _sql(store, "UPDATE embeddings SET vector = ? WHERE cell_id = 2 AND model = 'alpha'",
         params=(nan,))
    with ReferenceStore.open(store, readonly=True) as s:
        with pytest.raises(StoreError, match="'alpha' embedding of cell 2 is refused .*not finite"):
            s.embeddings("alpha")
        assert s.embeddings("alpha", [1, 3]).shape == (2, 8)
        problems = s.check()
        assert any("1 'alpha' embeddings are malformed or not finite (cells [2])" in p
                   for p in problems)
    target = _store(tmp_path / "mine.cellseek", image_hash="hash-b")
    with ReferenceStore.open(target) as mine:
        with pytest.raises(StoreError, match="cell 2 is not finite; .*nothing was merged"):
            mine.merge_from(store)
        assert mine.n_cells() == 3
    _sql(store, "UPDATE embeddings SET vector = x'0000' WHERE cell_id = 1 AND model = 'beta'")
    with ReferenceStore.open(store, readonly=True) as s:  # checked where read, not at each open
        with pytest.raises(StoreError, match="'beta' embedding of cell 1 is refused .*2 bytes"):
            s.embeddings("beta", [1, 3])
        assert s.embeddings("beta", [3]).shape == (1, 4)


def test_huge_model_dim_and_thumbnail_bombs(tmp_path):
    store = _store(tmp_path / "a.cellseek")
    _sql(store, "PRAGMA foreign_keys = OFF", "UPDATE models SET dim = 2000000000 WHERE "
         "name = 'beta'")
    with pytest.raises(StoreError, match="dim is not an integer from 1 to 65536"):
        ReferenceStore.open(store, readonly=True)
    store = _store(tmp_path / "c.cellseek")
    _sql(store, "PRAGMA foreign_keys = OFF",
         "INSERT INTO embeddings (cell_id, model, vector) VALUES (1, 'ghost', x'00')")
    with pytest.raises(StoreError, match="model 'ghost' is not a model of the store"):
        ReferenceStore.open(store, readonly=True)
    # A 60-byte PNG that declares 100000 x 100000 pixels.
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = struct.pack(">II", 100_000, 100_000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    store = _store(tmp_path / "b.cellseek")
    _sql(store, "INSERT INTO thumbnails (cell_id, data) VALUES (1, ?)", params=(bytes(png),))
    png = bytearray(png)
    png[16:24] = struct.pack(">II", 5000, 5000)  # below Pillow's own limit, above ours
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    _sql(store, "INSERT INTO thumbnails (cell_id, data) VALUES (2, ?)", params=(bytes(png),))
    with ReferenceStore.open(store, readonly=True) as s:
        assert s.thumbnail(1) is None and s.thumbnail(2) is None
        assert any("thumbnail of cell 2: 5000 x 5000 pixels, more than 1024" in p
                   for p in s.check())
        assert any("thumbnail of cell 1: a decompression bomb (Image size (10000000000 pixels)"
                   in p for p in s.check())


def test_intact_store_checks_clean(tmp_path):
    with ReferenceStore.open(_store(tmp_path / "ref.cellseek"), readonly=True) as s:
        assert s.check() == []


# ------------------------------------------------------------------------ merge rules


def test_merge_of_stores_with_other_crop_settings_is_refused(tmp_path):
    a = tmp_path / "a.cellseek"
    b = tmp_path / "b.cellseek"
    with Session.create(a, Config(embed=EmbedConfig(preset="offline"))):
        pass
    with Session.create(b, Config(embed=EmbedConfig(preset="offline"),
                                  crop=CropConfig(size=64))) as other:
        image_id = other.store.add_image("b.tif", "hash-b")
        dim = other.store.models["classical"]
        ids = other.store.add_cells(image_id, _cells(2),
                                    {"classical": np.ones((2, dim), np.float32)})
        other.store.set_labels(ids, ["p", "q"])
    with ReferenceStore.open(a) as mine:
        with pytest.raises(IncompatibleStoreError, match="cropped with .*'size': 64.*'size': 128"):
            mine.merge_from(b)
        assert mine.n_cells() == 0
        counts = mine.merge_from(b, labels_only=True)  # labels only: nothing to compare
        assert counts["cells_added"] == 0


def test_crop_pixel_size_from_a_store_cannot_blow_up_the_crop_window(tmp_path):
    from cellseek.crops import cells_from_labels, extract_crops
    from cellseek.errors import CellseekError

    path = tmp_path / "ref.cellseek"
    with Session.create(path, Config(embed=EmbedConfig(preset="offline"))) as session:
        session.store.set_meta("target_pixel_size_um", 1e7)
    with pytest.raises(StoreError, match="crop pixel size is not a number from 0 to 1000"):
        Session.open(path)
    # Within the store's bound, a crafted image pixel size could still ask for a huge window.
    labels = np.zeros((32, 32), np.int32)
    labels[10:20, 10:20] = 1
    plane = np.zeros((32, 32, 3), np.uint8)
    config = CropConfig(size=64, target_pixel_size_um=500.0)
    with pytest.raises(CellseekError, match="window, more than the limit of 4096"):
        extract_crops(plane, labels, cells_from_labels(labels), config, pixel_size_um=1e-3)
    crops, _ = extract_crops(plane, labels, cells_from_labels(labels), config, pixel_size_um=50.0)
    assert crops.shape == (1, 64, 64, 3)
