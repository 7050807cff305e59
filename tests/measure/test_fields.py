import numpy as np
from PIL import Image

from _shared import synthetic_field
from cellseek.measure.evaluate import eval_set
from cellseek.measure.fields import evaluate_fields, read_boxes
from cellseek.types import run_work


def test_fields_detection_and_type_on_synthetic_boxes(tmp_path):
    from cellseek.config import Config, SegmentConfig
    from cellseek.crops import cells_from_labels, extract_crops
    from cellseek.zoo import load_embedder

    rgb, labels, classes = synthetic_field(0)
    Image.fromarray(rgb).save(tmp_path / "f.png")
    rows = ["image,xmin,ymin,xmax,ymax,label,wbc_type"]
    for c in cells_from_labels(labels):
        r0, c0, r1, c1 = c.bbox
        rows.append(f"f.png,{c0},{r0},{c1},{r1},CELL,{classes[c.label]}")
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    assert len(read_boxes(tmp_path / "boxes.csv", target="CELL")[tmp_path / "f.png"]) == 8
    # Reference: the same kind of cells from another synthetic field.
    rgb2, labels2, classes2 = synthetic_field(5)
    cells2 = cells_from_labels(labels2)
    crops, masks = extract_crops(rgb2, labels2, cells2)
    emb = load_embedder("classical").embed(crops, masks)
    ref = eval_set("ref", {"classical": emb}, [classes2[c.label] for c in cells2])
    cfg = Config(segment=SegmentConfig(method="classical", stain="label-free", min_area=50))
    out = run_work(evaluate_fields(tmp_path / "boxes.csv", ref, config=cfg, target="CELL",
                                   align="none"))
    assert out["n_gt"] == 8 and out["recall"] >= 0.75
    assert out["n_typed"] == out["n_matched"] and out["type_macro_accuracy"] >= 0.75
    assert np.isfinite(out["mean_iou"])
