"""A reference set made with the old default (classical features only) keeps working when the
default preset is the packaged one: it is opened with its own models, never the preset's."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.config import DEFAULT_PRESET, Config, EmbedConfig
from cellseek.session import Session
from cellseek.types import run_work


@pytest.mark.default_preset
def test_a_classical_store_opens_and_suggests_under_the_packaged_default(tmp_path):
    assert Config().embed.preset == DEFAULT_PRESET != "light"
    path = tmp_path / "old.cellseek"
    rng = np.random.default_rng(0)
    plane = np.full((96, 96), 40, np.uint8)
    for r, c in ((24, 24), (24, 72), (72, 24), (72, 72)):
        yy, xx = np.ogrid[:96, :96]
        plane[(yy - r) ** 2 + (xx - c) ** 2 < 100] = 200
    plane = np.clip(plane + rng.integers(0, 10, plane.shape), 0, 255).astype(np.uint8)
    labels = np.zeros((96, 96), np.int32)
    for i, (r, c) in enumerate(((24, 24), (24, 72), (72, 24), (72, 72)), start=1):
        yy, xx = np.ogrid[:96, :96]
        labels[(yy - r) ** 2 + (xx - c) ** 2 < 100] = i
    with Session.create(path, Config(embed=EmbedConfig(preset="light"))) as old:
        from cellseek.types import ImageData

        image = ImageData(data=plane, axes="YX", path="field.png")
        image_id = run_work(old.add_image(image, labels={(0, 0): labels}))
        ids = [c["id"] for c in old.store.cells(image_id)]
        old.label(ids[:2], ["a", "b"])
    with Session.open(path, Config()) as again:  # the packaged default
        assert again.models == ("classical",)
        found = run_work(again.suggest())
        assert set(found) == set(ids[2:])
        assert all(s.best_label in {"a", "b"} for s in found.values())
