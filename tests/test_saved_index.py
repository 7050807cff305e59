"""The search index travels with the store (issue 14): saved, reloaded, kept current, refused
when stale or damaged."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import numpy as np
import pytest

from _shared import synthetic_field
from cellseek.cli.main import main
from cellseek.config import Config, IndexConfig, SegmentConfig
from cellseek.session import Session
from cellseek.types import ImageData, run_work

CFG = Config(segment=SegmentConfig(method="classical"))


def _store(path, first_seed=0):
    """Two labelled fields (reference) and two unlabelled ones; suggestions run once."""
    with Session.create(path, CFG) as session:
        for seed in range(first_seed, first_seed + 4):
            rgb, labels, classes = synthetic_field(seed)
            image = ImageData(rgb, "YXS", path=f"f{seed}.png", device="test")
            image_id = run_work(session.add_image(image, labels={(0, 0): labels},
                                                  source="ref" if seed < first_seed + 2
                                                  else "qry"))
            if seed < first_seed + 2:
                cells = session.store.cells(image_id)
                session.label([c["id"] for c in cells],
                              [classes[c["label_value"]] for c in cells])
        suggestions = run_work(session.suggest())
    return path, suggestions


def _answers(session, ids):
    return [(s.label, round(s.confidence, 5), tuple(n.cell_id for n in s.neighbours))
            for s in session.suggest_cells(ids)]


def test_a_reopened_store_suggests_from_its_saved_index_exactly_as_a_rebuilt_one(tmp_path):
    path, suggestions = _store(tmp_path / "s.cellseek")
    ids = sorted(suggestions)
    with Session.open(path, CFG) as session:
        loaded = _answers(session, ids)
        assert session.index_origin == "saved"
        session.rebuild_index()
        assert session.index_origin == "built"
        assert _answers(session, ids) == loaded
    with Session.open(path, CFG, readonly=True) as session:  # read-only opens use it too
        assert _answers(session, ids) == loaded and session.index_origin == "saved"


def test_confirmed_cells_update_the_saved_index_incrementally(tmp_path):
    path, suggestions = _store(tmp_path / "s.cellseek")
    ids = sorted(suggestions)
    with Session.open(path, CFG) as session:
        session.suggest_cells(ids[:1])
        session.label(ids[:2], ["red", "blue"])
        assert set(ids[:2]) <= set(session.index().ids().tolist())
        after = _answers(session, ids[2:])
    with Session.open(path, CFG) as session:  # saved at close, with the two new cells
        assert _answers(session, ids[2:]) == after and session.index_origin == "saved"
        assert set(ids[:2]) <= set(session.index().ids().tolist())
    # labels changed behind its back (another program): brought up to date on open
    from cellseek.store import ReferenceStore

    with ReferenceStore.open(path) as store:
        store.set_labels(ids[2:3], ["red"])
    with Session.open(path, CFG) as session:
        assert ids[2] in set(session.index().ids().tolist())
        assert session.index_origin == "saved (updated)"


def test_labels_changed_and_changed_back_are_compared_once(tmp_path, monkeypatch):
    path, suggestions = _store(tmp_path / "s.cellseek")
    ids = sorted(suggestions)
    from cellseek.store import ReferenceStore

    with ReferenceStore.open(path) as store:  # a change and its undo behind the session's back
        store.set_labels(ids[:1], ["red"])
        store.undo()
    with Session.open(path, CFG) as session:
        before = _answers(session, ids)
        assert session.index_origin == "saved"
    compared = []
    real = Session._id_to_label
    monkeypatch.setattr(Session, "_id_to_label", lambda self: compared.append(1) or real(self))
    with Session.open(path, CFG) as session:  # the state was stamped: no comparison again
        session.suggester()
        assert session.index_origin == "saved" and not compared
        assert _answers(session, ids) == before


def test_other_settings_or_a_damaged_array_rebuild_the_index(tmp_path, caplog):
    path, suggestions = _store(tmp_path / "s.cellseek")
    ids = sorted(suggestions)
    other = replace(CFG, index=IndexConfig(hnsw_m=16))
    with Session.open(path, other) as session:
        session.suggest_cells(ids[:1])
        assert session.index_origin == "built"  # another key: never used
    with Session.open(path, CFG) as session:
        want = _answers(session, ids)
        assert session.index_origin == "built"  # the run above saved its own key
    conn = sqlite3.connect(path)
    conn.execute("UPDATE search_arrays SET data = substr(data, 1, length(data) - 8) "
                 "WHERE name = 'index/vectors'")
    conn.commit()
    conn.close()
    with caplog.at_level("WARNING"), Session.open(path, CFG) as session:
        assert _answers(session, ids) == want
        assert session.index_origin == "built"
    assert any("rebuilt" in r.message for r in caplog.records)


def test_export_carries_the_index_and_merge_drops_it(tmp_path, capsys):
    path, suggestions = _store(tmp_path / "s.cellseek")
    assert main(["export", "--store", str(path), "-o", str(tmp_path / "out")]) == 0
    copy = tmp_path / "out" / "s.cellseek"
    with Session.open(copy, CFG) as session:
        session.suggest_cells(sorted(suggestions)[:1])
        assert session.index_origin == "saved"  # a colleague's first suggestion: no rebuild
    other, _ = _store(tmp_path / "other.cellseek", first_seed=10)
    assert main(["merge", str(other), "--store", str(copy)]) == 0
    with Session.open(copy, CFG) as session:
        assert session.store.search_state_info() is None
        session.suggest_cells(sorted(suggestions)[:1])
        assert session.index_origin == "built"


def test_the_index_command(tmp_path, capsys):
    path, _ = _store(tmp_path / "s.cellseek")
    assert main(["index", "status", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "saved, current" in out and "exact" in out
    assert main(["index", "drop", "--store", str(path)]) == 0
    assert main(["index", "status", "--store", str(path)]) == 0
    assert "no saved index" in capsys.readouterr().out
    assert main(["index", "build", "--store", str(path), "-q"]) == 0
    assert main(["index", "status", "--store", str(path)]) == 0
    assert "saved, current" in capsys.readouterr().out


def test_the_saved_index_survives_float_noise_in_nothing_but_is_deterministic(tmp_path):
    """Two saves of the same fit give the same arrays (no hidden randomness in the state)."""
    path, suggestions = _store(tmp_path / "s.cellseek")
    with Session.open(path, CFG) as session:
        session.rebuild_index()
        first = session.store.search_state()[2]
        session.rebuild_index()
        second = session.store.search_state()[2]
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


@pytest.mark.parametrize("tamper", ["DELETE FROM search_arrays WHERE name = 'labels/ids'",
                                    "UPDATE search_arrays SET dtype = 'object'",
                                    "UPDATE search_state SET header = '{not json'"])
def test_a_crafted_saved_state_is_refused_with_a_clear_reason(tmp_path, tamper):
    path, suggestions = _store(tmp_path / "s.cellseek")
    conn = sqlite3.connect(path)
    conn.execute(tamper)
    conn.commit()
    conn.close()
    try:
        with Session.open(path, CFG) as session:
            session.suggest_cells(sorted(suggestions)[:1])
            assert session.index_origin == "built"
    except Exception as err:  # a dtype outside the list is refused when the store opens
        assert "search" in str(err) and "dtype" in str(err)


def _flip_one_byte(path, name):
    conn = sqlite3.connect(path)
    data = bytearray(conn.execute("SELECT data FROM search_arrays WHERE name = ? AND part = 0",
                                  (name,)).fetchone()[0])
    data[len(data) // 2] ^= 0xFF
    conn.execute("UPDATE search_arrays SET data = ? WHERE name = ? AND part = 0",
                 (bytes(data), name))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("name", ["labels/codes", "index/vectors"])
def test_an_array_edited_in_place_is_refused_and_rebuilt(tmp_path, caplog, capsys, name):
    """Same size, other values: the digests in the header catch it (issue 14)."""
    path, suggestions = _store(tmp_path / "s.cellseek")
    ids = sorted(suggestions)
    with Session.open(path, CFG) as session:
        want = _answers(session, ids)
        assert session.index_origin == "saved"
    _flip_one_byte(path, name)
    assert main(["index", "status", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "refused" in out and "saved, current" not in out
    with caplog.at_level("WARNING"), Session.open(path, CFG) as session:
        assert _answers(session, ids) == want
        assert session.index_origin == "built"
    assert any("checksum" in r.getMessage() for r in caplog.records)


def test_a_deeply_nested_header_is_refused_not_a_crash(tmp_path, capsys):
    path, suggestions = _store(tmp_path / "s.cellseek")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE search_state SET header = ?", ("[" * 100_000 + "]" * 100_000,))
    conn.commit()
    conn.close()
    with Session.open(path, CFG) as session:
        session.suggest_cells(sorted(suggestions)[:1])
        assert session.index_origin == "built"
    assert main(["index", "status", "--store", str(path)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_relabel_and_its_undo_keep_the_digests(tmp_path):
    """Re-stamping the header (labels came back unchanged) keeps the arrays' checksums."""
    path, suggestions = _store(tmp_path / "s.cellseek")
    with Session.open(path, CFG) as session:
        state = session.store.search_state_info()
        header = session.store.search_state()[1]
        assert session.store.update_search_header(state["key"], header)
    with Session.open(path, CFG) as session:
        session.suggest_cells(sorted(suggestions)[:1])
        assert session.index_origin == "saved"


def test_the_batch_path_builds_and_saves_the_index_once_after_its_merge(tmp_path):
    from PIL import Image

    from cellseek.batch.runner import embed_many

    path, _ = _store(tmp_path / "s.cellseek")
    with Session.open(path, CFG) as session:
        session.drop_saved_index()
    folder = tmp_path / "more"
    folder.mkdir()
    for seed in (20, 21):
        Image.fromarray(synthetic_field(seed)[0]).save(folder / f"f{seed}.png")
    summary = embed_many(folder, path, CFG, scheduler="sync", progress=False)
    assert summary["images_added"] == 2 and "saved with the store" in summary["index"]
    with Session.open(path, CFG) as session:
        assert session.store.search_state_info()["key"] == session.state_key()
        session.index()
        assert session.index_origin == "saved"
