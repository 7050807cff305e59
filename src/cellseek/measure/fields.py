"""End to end on whole fields: detection against ground-truth boxes, then the suggested type.

Input: a boxes CSV in the layout of ``bccd/boxes.csv`` (``image,xmin,ymin,xmax,ymax,label,
wbc_type``; VOC pixel boxes; image paths relative to the CSV). Every field is segmented with the
configured (default) segmenter; predicted cells are matched one-to-one to the boxes of the target
class at box IoU >= 0.5 (:func:`cellseek.measure.detection.match_boxes`). Every detected box with a
known type is cropped exactly as in the annotation loop and labelled by the kNN vote against a
reference set; macro accuracy counts the classes present in both.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from cellseek.config import Config
from cellseek.crops import cells_from_labels
from cellseek.errors import CellseekError
from cellseek.measure.scoring import eval_set, knn_predict, macro_accuracy, shared_classes
from cellseek.search.cellset import CellSet
from cellseek.types import Progress, Work

logger = logging.getLogger(__name__)


def read_boxes(boxes_csv, *, target: str = "WBC") -> dict[Path, list[tuple[np.ndarray, str]]]:
    """Image path -> list of (box (row0, col0, row1, col1), type) of the target class."""
    from cellseek.measure.detection import voc_to_boxes

    boxes_csv = Path(boxes_csv)
    out: dict[Path, list] = defaultdict(list)
    with open(boxes_csv, newline="") as f:
        reader = csv.DictReader(f)
        need = {"image", "xmin", "ymin", "xmax", "ymax", "label"}
        if not need <= set(reader.fieldnames or ()):
            raise CellseekError(f"{boxes_csv}: needs columns {sorted(need)}, "
                                f"has {reader.fieldnames}")
        for row in reader:
            path = boxes_csv.parent / row["image"]
            out.setdefault(path, [])
            if row["label"] == target:
                box = voc_to_boxes([[float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]])
                out[path].append((box[0], row.get("wbc_type") or ""))
    return dict(out)


def evaluate_fields(
    boxes_csv,
    reference: CellSet | None = None,
    *,
    config: Config | None = None,
    target: str = "WBC",
    iou: float = 0.5,
    limit: int | None = None,
    align: str | None = None,
) -> Work[dict]:
    """Detection recall/precision on whole fields and accuracy of the suggested type.

    Parameters
    ----------
    boxes_csv : path
        Ground-truth boxes.
    reference : CellSet, optional
        Labelled reference cells (same models as ``config``); without it only detection is
        measured.
    config : Config, optional
        Segmentation, crop, embedding and vote settings.
    target : str
        Box label to detect.
    iou : float
        Match threshold.
    limit : int, optional
        Only the first ``limit`` fields.
    align : str, optional
        Source alignment of the detected cells against the reference (default
        ``config.align.method``).

    Returns
    -------
    dict
        ``recall``, ``precision``, ``mean_iou``, ``n_fields``, ``n_gt``, ``n_pred``,
        ``n_matched``, and with a reference ``type_macro_accuracy``, ``type_per_class_recall``,
        ``n_typed``.
    """
    from cellseek.io import iter_planes, read_image
    from cellseek.measure.detection import match_boxes
    from cellseek.measure.scoring import with_modes
    from cellseek.pipeline import Pipeline

    config = with_modes(config, align=align)
    pipeline = Pipeline(config, list(reference.embeddings) if reference is not None else ())
    fields = read_boxes(boxes_csv, target=target)
    items = sorted(fields.items())[:limit]
    n_gt = n_pred = n_matched = 0
    ious, crops, masks, sizes, types = [], [], [], [], []
    for i, (path, boxes) in enumerate(items):
        yield Progress(i, len(items), "fields", path.name)
        image = read_image(path)
        _, _, plane = next(iter_planes(image))
        labels = yield from pipeline.segment_plane(plane)
        gt = np.array([b for b, _ in boxes]).reshape(-1, 4)
        m = match_boxes(labels, gt, iou=iou)
        n_gt += m["n_gt"]
        n_pred += m["n_pred"]
        n_matched += m["n_matched"]
        ious += list(m["ious"].values())
        typed = {lab: boxes[g][1] for lab, g in m["matches"].items() if boxes[g][1]}
        if reference is not None and typed:
            cells = [c for c in cells_from_labels(labels) if c.label in typed]
            c, k = pipeline.crops(plane, labels, cells, image.pixel_size_um)
            crops.append(c)
            masks.append(k)
            sizes.append(pipeline.crop_sizes(cells, image.pixel_size_um))
            types += [typed[c.label] for c in cells]
    result = {
        "boxes": str(boxes_csv), "target": target, "iou_threshold": iou,
        "n_fields": len(items), "n_gt": n_gt, "n_pred": n_pred, "n_matched": n_matched,
        "recall": n_matched / n_gt if n_gt else float("nan"),
        "precision": n_matched / n_pred if n_pred else float("nan"),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "segmenter": pipeline.segment_method(),
    }
    if reference is not None and types:
        yield Progress(len(items), len(items), "fields", "embedding detected cells")
        embs = yield from pipeline.embed_crops(np.concatenate(crops), np.concatenate(masks),
                                               np.concatenate(sizes))
        query = eval_set(f"{boxes_csv} (detected)", embs, types,
                         [f"fields:{boxes_csv}"] * len(types))
        ref, qry, shared = shared_classes(reference, query)
        pred, weights = knn_predict(ref, qry, config=config)
        macro, per_class = macro_accuracy(qry.labels, pred)
        result.update(type_macro_accuracy=macro, type_per_class_recall=per_class,
                      n_typed=len(qry), classes=shared, weights=weights,
                      align=config.align.method)
    yield Progress(len(items), len(items), "fields", "done")
    return result
