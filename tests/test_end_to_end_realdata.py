"""The whole loop on real images from ../shared/data (skips when it is absent)."""

import csv

import numpy as np

from _shared import shared_data
from cellseek.config import Config
from cellseek.reference import add_labelled_csv
from cellseek.session import Session
from cellseek.types import run_work


def _small_reference(tmp_path, per_class=8):
    pbc = shared_data("pbc_subset", "labels.csv")
    rows = list(csv.DictReader(open(pbc)))
    rng = np.random.default_rng(1)
    classes = ["neutrophil", "eosinophil", "lymphocyte", "monocyte"]
    out = tmp_path / "ref.csv"
    with open(out, "w") as f:
        f.write("path,label,source\n")
        for c in classes:
            rs = [r for r in rows if r["label"] == c]
            for i in rng.choice(len(rs), per_class, replace=False):
                f.write(f"{pbc.parent / rs[i]['path']},{c},PBC\n")
    return out


def test_pbc_reference_suggests_types_on_bccd_fields(tmp_path):
    images = shared_data("bccd", "images")
    session = Session.create(tmp_path / "ref.cellseek", Config())
    n = run_work(add_labelled_csv(session, _small_reference(tmp_path)))
    assert n == 32 and session.store.classes() == {
        "neutrophil": 8, "eosinophil": 8, "lymphocyte": 8, "monocyte": 8}
    ids = [run_work(session.add_image(images / f"BloodImage_0000{i}.jpg", source="BCCD"))
           for i in (0, 1, 2)]
    for image_id in ids:
        cells = session.store.cells(image_id)
        assert 1 <= len(cells) <= 5  # the white blood cell(s), not the red cells
        assert session.plane_labels(image_id)[(0, 0)].shape == (480, 640)
    suggestions = run_work(session.suggest())
    assert len(suggestions) == sum(len(session.store.cells(i)) for i in ids)
    for s in suggestions.values():
        assert s.best_label in session.store.classes() and 0 < s.confidence <= 1
        assert len(s.neighbours) >= 1
    # Confirm one, it joins the reference set, and a re-opened store keeps it.
    cid = next(iter(suggestions))
    session.label([cid], ["monocyte"])
    session.close()
    with Session.open(tmp_path / "ref.cellseek") as again:
        assert again.store.cell(cid)["label"] == "monocyte"
        assert again.store.classes()["monocyte"] == 9
