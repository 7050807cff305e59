"""The saved index never claims labels it does not hold (issue 24 items 3 and 7, issue 22 item 7).

Two programs label one store; the index saved by one of them records the label stamp it was
really brought up to, so the next opening adds the other program's labels. An index that cannot
be saved says so; an empty reference set's index is saved and used like any other.
"""

from __future__ import annotations

from _shared import synthetic_field
from cellseek.cli.main import main
from cellseek.config import Config, SegmentConfig
from cellseek.session import Session
from cellseek.store import ReferenceStore
from cellseek.types import ImageData, run_work

CFG = Config(segment=SegmentConfig(method="classical"))


def _store(path):
    """Two labelled fields ("ref") and two unlabelled ones ("qry"); the index is saved."""
    with Session.create(path, CFG) as session:
        for seed in range(4):
            rgb, labels, classes = synthetic_field(seed)
            image = ImageData(rgb, "YXS", path=f"f{seed}.png", device="test")
            image_id = run_work(session.add_image(image, labels={(0, 0): labels},
                                                  source="ref" if seed < 2 else "qry"))
            if seed < 2:
                cells = session.store.cells(image_id)
                session.label([c["id"] for c in cells],
                              [classes[c["label_value"]] for c in cells])
        run_work(session.suggest())
    return path


def test_labels_another_program_confirmed_meanwhile_reach_the_saved_index(tmp_path, capsys):
    path = _store(tmp_path / "s.cellseek")
    a = Session.open(path, CFG)
    unlabelled = [c["id"] for c in a.store.cells(labelled=False)]
    a.suggest_cells(unlabelled[:1])  # A works from the saved index
    assert a.index_origin == "saved"
    n_before = len(a.index())
    with Session.open(path, CFG) as b:  # B labels cells of a new class and closes
        b.label(unlabelled[1:9], ["green"] * 8)
    a.label(unlabelled[9:10], ["red"])  # A labels one more cell, then closes: it saves
    a.close()
    with ReferenceStore.open(path, readonly=True) as store:
        n_labelled = store.n_cells(labelled=True)
    assert n_labelled == n_before + 9
    with Session.open(path, CFG) as c:
        index = c.index()
        assert len(index) == n_labelled  # not n_before + 1
        assert c.index_origin == "saved (updated)"
        assert "green" in set(c.suggester().labels.values())
    assert main(["index", "status", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"over {n_labelled} cells" in out  # after the update was saved at close


def test_own_labels_keep_the_saved_index_current_without_a_comparison(tmp_path, monkeypatch):
    path = _store(tmp_path / "s.cellseek")
    with Session.open(path, CFG) as a:
        unlabelled = [c["id"] for c in a.store.cells(labelled=False)]
        a.suggest_cells(unlabelled[:1])
        a.label(unlabelled[:3], ["red", "blue", "red"])
        a.undo()
        a.label(unlabelled[3:4], ["blue"])
    from cellseek.search import saved

    calls = []
    real = saved.label_changes
    monkeypatch.setattr(saved, "label_changes", lambda *a: calls.append(1) or real(*a))
    with Session.open(path, CFG) as c:
        c.index()
        assert c.index_origin == "saved" and calls == []  # stamped current at its close
        assert unlabelled[3] in set(c.index().ids().tolist())
        assert unlabelled[0] not in set(c.index().ids().tolist())  # undone


def test_index_build_that_cannot_save_says_so_and_fails(tmp_path, capsys, monkeypatch):
    path = _store(tmp_path / "s.cellseek")
    real = ReferenceStore.save_search_state

    def full_disk(self, key, header, arrays):
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        self._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's SQLITE_FULL
        return real(self, key, header, arrays)

    with Session.open(path, CFG) as session:
        session.drop_saved_index()
        session.store._conn.execute("VACUUM")  # no free pages left to save into
    monkeypatch.setattr(ReferenceStore, "save_search_state", full_disk)
    assert main(["index", "build", "--store", str(path), "-q"]) == 1
    captured = capsys.readouterr()
    assert "built and saved" not in captured.out
    err = captured.err.strip()
    assert "could not be saved" in err and "full" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(ReferenceStore, "save_search_state", real)
    assert main(["index", "status", "--store", str(path)]) == 0
    assert "no saved index" in capsys.readouterr().out  # nothing half-saved


def test_an_empty_reference_set_saves_an_index_that_is_used(tmp_path, capsys):
    path = tmp_path / "empty.cellseek"
    Session.create(path, CFG).close()
    assert main(["index", "build", "--store", str(path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "an exact index of 0 cells" in out
    assert main(["index", "status", "--store", str(path)]) == 0
    captured = capsys.readouterr()
    assert "saved, current" in captured.out and "refused" not in captured.out
    assert "malformed" not in captured.err
    with Session.open(path, CFG) as session:  # unlabelled cells added: still no offsets
        rgb, labels, _ = synthetic_field(0)
        run_work(session.add_image(ImageData(rgb, "YXS", path="f.png"), labels={(0, 0): labels}))
    for _ in range(2):
        assert main(["index", "status", "--store", str(path)]) == 0
        captured = capsys.readouterr()
        assert "saved, current" in captured.out and "refused" not in captured.out
        assert "malformed" not in captured.err
        assert main(["index", "build", "--store", str(path), "-q"]) == 0
