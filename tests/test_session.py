import numpy as np
import pytest

from _shared import synthetic_field
from cellseek.config import Config
from cellseek.errors import IncompatibleStoreError
from cellseek.session import Session
from cellseek.store import ReferenceStore
from cellseek.types import ImageData, Progress, run_work


def _image(seed):
    rgb, labels, classes = synthetic_field(seed)
    return ImageData(rgb, "YXS", path=f"synthetic{seed}.png", device="test"), labels, classes


def _session_with_reference(tmp_path):
    session = Session.create(tmp_path / "ref.cellseek", Config())
    img, labels, classes = _image(0)
    progress = []
    image_id = run_work(session.add_image(img, labels={(0, 0): labels}), progress.append)
    assert progress and all(isinstance(p, Progress) for p in progress)
    cells = session.store.cells(image_id)
    session.label([c["id"] for c in cells], [classes[c["label_value"]] for c in cells])
    return session


def test_label_suggest_accept_undo_export_reopen(tmp_path):
    session = _session_with_reference(tmp_path)
    assert session.models == ("classical",)
    assert session.store.classes() == {"red": 4, "blue": 4}
    img, labels, classes = _image(1)
    image_id = run_work(session.add_image(img, labels={(0, 0): labels}))
    query = session.store.cells(image_id)
    suggestions = run_work(session.suggest())
    assert set(suggestions) == {c["id"] for c in query}
    correct = [suggestions[c["id"]].best_label == classes[c["label_value"]] for c in query]
    assert np.mean(correct) == 1.0  # red discs vs blue ellipses are easy
    for c in query:  # suggestions are stored, not confirmed
        stored = session.store.cell(c["id"])
        assert stored["label"] is None and stored["suggestion"] == suggestions[c["id"]].label
    # Neighbours of a query cell are labelled reference cells, most similar first.
    s = session.suggest_cells([query[0]["id"]])[0]
    sims = [n.similarity for n in s.neighbours]
    assert sims == sorted(sims, reverse=True) and len(sims) == 3
    # Accept, then undo.
    n = session.accept([query[0]["id"]])
    assert n == (1 if suggestions[query[0]["id"]].label else 0)
    if n:
        assert session.store.cell(query[0]["id"])["label_source"] == "accepted"
        assert query[0]["id"] in set(session.index().ids().tolist())
        session.undo()
        assert session.store.cell(query[0]["id"])["label"] is None
        assert query[0]["id"] not in set(session.index().ids().tolist())
    # A correction joins the index and changes the neighbourhood of the others.
    session.label([query[1]["id"]], ["blue"])
    assert session.store.cell(query[1]["id"])["label"] == "blue"
    paths = session.export(tmp_path / "export")
    assert paths["cells"].read_text().count("\n") == 17
    assert any(k.endswith("_t0_z0_labels") for k in paths)
    session.close()
    with Session.open(paths["store"]) as again:
        assert again.store.classes()["blue"] == 5


def test_adding_the_same_image_twice_keeps_cells_and_labels(tmp_path):
    session = _session_with_reference(tmp_path)
    img, labels, _ = _image(0)
    n = session.store.n_cells()
    run_work(session.add_image(img, labels={(0, 0): labels}))
    assert session.store.n_cells() == n and session.store.n_cells(labelled=True) == n


def test_weights_are_uniform_for_one_model_and_stored(tmp_path):
    session = _session_with_reference(tmp_path)
    assert session.model_weights(refresh=True) == {"classical": 1.0}
    assert session.store.model_weights() == {"classical": 1.0}


def test_opening_with_another_model_set_is_refused(tmp_path):
    _session_with_reference(tmp_path).close()
    with pytest.raises(IncompatibleStoreError):
        ReferenceStore.open(tmp_path / "ref.cellseek", models={"dinov2_vits14": 384})


def test_suggest_without_reference_abstains(tmp_path):
    session = Session.create(tmp_path / "empty.cellseek")
    img, labels, _ = _image(2)
    run_work(session.add_image(img, labels={(0, 0): labels}))
    out = run_work(session.suggest())
    assert out and all(s.uncertain for s in out.values())


def test_crops_follow_physical_scale_when_pixel_size_is_known(tmp_path):
    from cellseek.crops import cells_from_labels, extract_crops

    session = Session.create(tmp_path / "scale.cellseek")

    def disc(radius, size):
        yy, xx = np.mgrid[:size, :size]
        return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2).astype(np.int32)

    fractions = []
    for radius, size, px in ((10, 120, 1.0), (20, 240, 0.5)):  # a 2x higher magnification
        lab = disc(radius, size)
        cells = cells_from_labels(lab)
        crop = session.crop_config_for(cells, px)
        assert crop.target_pixel_size_um == pytest.approx(session.store.meta(
            "target_pixel_size_um"))
        _, m = extract_crops(lab.astype(float), lab, cells, crop, pixel_size_um=px)
        fractions.append(m.mean())
    assert fractions[0] == pytest.approx(fractions[1], rel=0.1)
    assert session.crop_config_for(cells, None) == session.config.crop  # unknown: per-cell box


def test_balanced_alignment_removes_a_device_offset(tmp_path):
    """Reference cells on device A, the same classes shifted by a device offset on device B."""
    from dataclasses import replace

    from cellseek.config import AlignConfig
    from cellseek.types import Cell

    rng = np.random.default_rng(0)
    dim = Session.create(tmp_path / "probe.cellseek").store.models["classical"]
    centres = rng.normal(size=(3, dim)) * 2
    shift = 1.2 * (centres[1] - centres[0])  # the device makes class c0 look like c1

    def accuracy(method):
        session = Session.create(tmp_path / f"{method}.cellseek",
                                 replace(Config(), align=AlignConfig(method=method)))
        truth = {}
        for source, offset, n in (("A", 0.0, 30), ("B", shift, 60)):
            image_id = session.store.add_image(f"{source}.tif", source * 64, source=source)
            codes = np.arange(n) % 3
            codes = codes if source == "A" else np.where(np.arange(n) < 40, 0, codes)  # mix
            emb = centres[codes] + rng.normal(size=(n, dim)) + offset
            cells = [Cell(label=i + 1, bbox=(0, 0, 1, 1), area=1) for i in range(n)]
            ids = session.store.add_cells(image_id, cells, {"classical": emb.astype(np.float32)})
            if source == "A":
                session.label(ids, [f"c{c}" for c in codes])
            else:
                truth = dict(zip(ids.tolist(), (f"c{c}" for c in codes)))
        out = run_work(session.suggest())
        session.close()
        return np.mean([out[i].best_label == t for i, t in truth.items()])

    aligned, plain = accuracy("balanced"), accuracy("none")
    assert aligned >= 0.95 and plain < 0.8, (aligned, plain)


def test_pca_index_holds_reduced_vectors_and_still_suggests(tmp_path):
    """``IndexConfig.pca_components``: the index is built on per-model PCA projections."""
    from dataclasses import replace

    from cellseek.config import IndexConfig
    from cellseek.types import Cell

    rng = np.random.default_rng(1)
    cfg = replace(Config(), index=IndexConfig(pca_components=6))
    session = Session.create(tmp_path / "pca.cellseek", cfg)
    dim = session.store.models["classical"]
    assert dim > 6
    centres = rng.normal(size=(3, dim)) * 3
    image_id = session.store.add_image("a.tif", "a" * 64, source="A")
    codes = np.arange(90) % 3
    emb = (centres[codes] + rng.normal(size=(90, dim))).astype(np.float32)
    cells = [Cell(label=i + 1, bbox=(0, 0, 1, 1), area=1) for i in range(90)]
    ids = session.store.add_cells(image_id, cells, {"classical": emb})
    ref, query = ids[:60], ids[60:]
    session.label(ref, [f"c{c}" for c in codes[:60]])
    index = session.index()
    assert index.dim == 6 and len(index) == 60
    assert session.fused_vectors(query[:3]).shape == (3, 6)
    out = session.suggest_cells(query)
    assert np.mean([s.best_label == f"c{c}" for s, c in zip(out, codes[60:])]) >= 0.95
    # a confirmed cell joins the reduced index; a rebuild refits the PCA on the larger set
    session.label([query[0]], [f"c{codes[60]}"])
    assert len(session.index()) == 61 and session.index().dim == 6
    assert session.rebuild_index().dim == 6
    session.close()
