"""Product-path transfer check: a Session with a PBC reference, whole BCCD fields as queries.

Usage: ``python scripts/eval_session_fields.py {balanced,none} N_FIELDS [OUT_DIR]``

The reference is the 1,500 white-blood-cell crops of ``../shared/data/pbc_subset`` (5 classes);
the queries are the first N BCCD fields with exactly one typed WBC box. Each field goes through
``Session.add_image`` (default segmentation) and ``Session.suggest`` with the given source
alignment; the detected cell matched to the WBC box (box IoU >= 0.5) is scored against its type.
"""

from __future__ import annotations

import csv
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cellseek.config import AlignConfig, Config
from cellseek.measure.detection import match_boxes
from cellseek.measure.fields import read_boxes
from cellseek.reference import add_labelled_csv
from cellseek.session import Session
from cellseek.types import run_work

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WBC = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")


def main(method: str, n_fields: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    ref_csv = out / "ref.csv"
    with open(DATA / "pbc_subset" / "labels.csv") as f, open(ref_csv, "w") as g:
        g.write("path,label,source\n")
        for row in csv.DictReader(f):
            if row["label"] in WBC:
                g.write(f"{DATA / 'pbc_subset' / row['path']},{row['label']},PBC\n")
    cfg = replace(Config(), align=AlignConfig(method=method))
    base = out / "ref_base.cellseek"
    if not base.exists():  # embed the reference once, reuse it for every method
        with Session.create(base, cfg) as session:
            run_work(add_labelled_csv(session, ref_csv))
    store = out / f"ref_{method}.cellseek"
    shutil.copy(base, store)
    truth = {}
    with Session.open(store, cfg) as session:
        boxes = read_boxes(DATA / "bccd" / "boxes.csv")
        typed = [(p, b) for p, b in sorted(boxes.items()) if len(b) == 1 and b[0][1]][:n_fields]
        for path, box in typed:
            image_id = run_work(session.add_image(path, source="BCCD"))
            labels = session.plane_labels(image_id)[(0, 0)]
            by_value = {c["label_value"]: c["id"] for c in session.store.cells(image_id)}
            for value in match_boxes(labels, np.array([box[0][0]]))["matches"]:
                truth[by_value[value]] = box[0][1]
        suggestions = run_work(session.suggest())
    recall = {}
    for cell_id, kind in truth.items():
        recall.setdefault(kind, []).append(suggestions[cell_id].best_label == kind)
    per_class = {c: round(100 * float(np.mean(v))) for c, v in sorted(recall.items())}
    macro = 100 * np.mean([np.mean(v) for v in recall.values()])
    print(f"{method}: {len(typed)} fields, {len(truth)} matched typed WBCs, macro accuracy "
          f"{macro:.1f} %, per class {per_class}, {time.time() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]),
         Path(sys.argv[3]) if len(sys.argv) > 3 else Path("/tmp/cellseek-session-fields"))
