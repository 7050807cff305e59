"""The one path from pixels to embeddings (cellseek.pipeline), and every caller going through it."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from _shared import synthetic_field
from cellseek.cli.main import main
from cellseek.config import Config, CropConfig, SegmentConfig
from cellseek.pipeline import Pipeline, physical_target
from cellseek.session import Session
from cellseek.store import ReferenceStore
from cellseek.types import ImageData, run_work

CLASSICAL = Config(segment=SegmentConfig(method="classical"))


def _calibrated_tiff(path, seed=0, pixel_size_um=0.5):
    """A synthetic RGB field saved as a TIFF that states its pixel size."""
    rgb = synthetic_field(seed)[0]
    per_cm = 1e4 / pixel_size_um
    tifffile.imwrite(path, rgb, photometric="rgb", resolution=(per_cm, per_cm),
                     resolutionunit="CENTIMETER")
    return path


def _stored(store_path):
    """(t, z, label value) -> (embedding, thumbnail) of every cell of a store."""
    with ReferenceStore.open(store_path, readonly=True) as store:
        cells = store.cells()
        embs = store.embeddings("classical", [c["id"] for c in cells])
        return {(c["t"], c["z"], c["label_value"]): (e, store.thumbnail(c["id"]))
                for c, e in zip(cells, embs)}, store.meta("target_pixel_size_um")


def test_session_cli_and_workers_embed_a_calibrated_tiff_identically(tmp_path, capsys):
    """The same calibrated TIFF through Session, `cellseek embed` and `cellseek embed --workers
    1`: identical crops (thumbnails), embeddings and physical crop scale."""
    tif = _calibrated_tiff(tmp_path / "field.tif")
    a, b, c = (tmp_path / f"{n}.cellseek" for n in "abc")
    with Session.create(a, CLASSICAL) as session:
        run_work(session.add_image(tif))
    assert main(["embed", str(tif), "--store", str(b), "--method", "classical", "-q"]) == 0
    assert main(["embed", str(tif), "--store", str(c), "--method", "classical", "-q",
                 "--workers", "1"]) == 0
    capsys.readouterr()
    cells_a, target_a = _stored(a)
    assert target_a is not None and len(cells_a) >= 4
    for other in (b, c):
        cells_o, _ = _stored(other)
        assert cells_o.keys() == cells_a.keys()
        for key, (emb, thumb) in cells_a.items():
            np.testing.assert_array_equal(cells_o[key][0], emb)
            assert cells_o[key][1] == thumb
    # the worker path recorded the same physical scale
    with Session.open(c) as session:
        assert session.config.crop.target_pixel_size_um == pytest.approx(target_a)


def test_the_pixel_size_rule_fixes_one_scale_from_the_first_calibrated_plane():
    rgb, labels, _ = synthetic_field(0)
    pipeline = Pipeline(CLASSICAL, ("classical",))
    from cellseek.crops import cells_from_labels

    cells = cells_from_labels(labels)
    assert pipeline.crop_config(cells, None).target_pixel_size_um is None
    crop = pipeline.crop_config(cells, 0.5)
    assert crop.target_pixel_size_um == pytest.approx(physical_target(cells, 0.5, CropConfig()))
    # a second image at another magnification keeps the first scale
    assert pipeline.crop_config(cells[:1], 0.25).target_pixel_size_um == \
        crop.target_pixel_size_um
    # fix_target finds it from a list of images, skipping uncalibrated ones
    fresh = Pipeline(CLASSICAL, ("classical",))
    plain = ImageData(rgb, "YXS", path="plain.png")
    calibrated = ImageData(rgb, "YXS", path="cal.tif", pixel_size_um=0.5)
    segmented = cells_from_labels(run_work(fresh.segment_plane(rgb)))
    expected = physical_target(segmented, 0.5, CropConfig())
    assert fresh.fix_target([plain, calibrated]) == pytest.approx(expected)
    assert Pipeline(CLASSICAL, ()).fix_target([plain]) is None


def test_labels_given_and_planes_skipped():
    rgb, labels, _ = synthetic_field(0)
    image = ImageData(np.stack([rgb, rgb]), "ZYXS", path="stack")
    pipeline = Pipeline(CLASSICAL, ("classical",))
    done = run_work(pipeline.process(image, labels={(0, 0): labels, (0, 1): labels},
                                     skip={(0, 0)}))
    assert [(p.t, p.z) for p in done] == [(0, 1)]
    assert len(done[0].cells) == int(labels.max())
    assert done[0].embeddings["classical"].shape[0] == len(done[0].cells)
    with pytest.raises(Exception, match="shape"):
        run_work(pipeline.process(image, labels={(0, 0): labels[:10]}))


def test_single_cell_images_are_cut_like_field_cells(tmp_path):
    """A single-cell image: the central object, cropped and embedded as in a whole field."""
    rgb, labels, _ = synthetic_field(0)
    from cellseek.crops import cells_from_labels

    cell = cells_from_labels(labels)[0]
    r, c = (int(v) for v in cell.centroid)
    window = rgb[max(r - 30, 0): r + 30, max(c - 30, 0): c + 30]
    pipeline = Pipeline(CLASSICAL, ("classical",))
    (single,) = run_work(pipeline.single_cells([ImageData(window, "YXS", path="one.png")]))
    assert len(single.cells) == 1 and single.crops.shape[0] == 1
    assert single.masks[0].mean() > 0.1  # the cell fills a good part of its crop
    assert single.embeddings["classical"].shape == (1, pipeline.embedders()["classical"].spec.dim)
    assert single.thumbnails[0].startswith(b"\x89PNG")


def test_weights_dir_reaches_the_segmenter(tmp_path, monkeypatch):
    """The pipeline hands its weights folder to segmentation (SAM looks for weights there)."""
    import cellseek.segment as segment

    seen = {}
    real = segment.segment_plane

    def spy(plane, config=None, *, weights_dir=None):
        seen["weights_dir"] = weights_dir
        return (yield from real(plane, config, weights_dir=weights_dir))

    monkeypatch.setattr(segment, "segment_plane", spy)
    from dataclasses import replace

    cfg = replace(CLASSICAL, embed=replace(CLASSICAL.embed, weights_dir=str(tmp_path)))
    run_work(Pipeline(cfg, ()).segment_plane(synthetic_field(0)[0]))
    assert seen["weights_dir"] == str(tmp_path)
