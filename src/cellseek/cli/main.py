"""The ``cellseek`` command line: the parser and the entry point.

The commands live in :mod:`~cellseek.cli.cmd_images`, :mod:`~cellseek.cli.cmd_store` and
:mod:`~cellseek.cli.cmd_measure`; heavy modules are imported after the arguments are parsed.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cellseek import __version__
from cellseek.cli.cmd_images import cmd_embed, cmd_reference, cmd_segment, cmd_suggest
from cellseek.cli.cmd_measure import cmd_bench, cmd_evaluate
from cellseek.cli.cmd_store import cmd_check, cmd_export, cmd_index, cmd_merge
from cellseek.cli.options import add_common, at_least, fraction, sizes

logger = logging.getLogger("cellseek")


def _check_weights_dir(args) -> None:
    """``--weights-dir`` must be a folder (``pull`` creates a missing one)."""
    from pathlib import Path

    from cellseek.errors import CellseekError

    folder = getattr(args, "weights_dir", None)
    if not folder:
        return
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise CellseekError(f"--weights-dir {folder}: this is a file, not a folder of model "
                            "weights")
    if not path.exists() and getattr(args, "action", None) != "pull":
        raise CellseekError(f"--weights-dir {folder}: no such folder (`cellseek models pull "
                            "NAME --weights-dir FOLDER` creates it)")


def cmd_models(args) -> int:
    from cellseek.cli import models as models_cli

    _check_weights_dir(args)
    if args.action == "list":
        print(models_cli.list_models_table(weights_dir=args.weights_dir))
        return 0
    if args.action == "pull":
        if not args.names:
            print("name at least one model or preset (see `cellseek models list`)",
                  file=sys.stderr)
            return 2
        return models_cli.pull_many(args.names, weights_dir=args.weights_dir,
                                    echo=lambda line: print(line, file=sys.stderr))
    return models_cli.check_many(args.names, weights_dir=args.weights_dir)


def cmd_demo(args) -> int:
    from cellseek.cli.demo import run_demo

    run_demo(args.output, quiet=args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cellseek`` command."""
    from cellseek.config import Config
    from cellseek.search.align import ALIGN_METHODS
    from cellseek.search.weighting import WEIGHTING_MODES

    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="cellseek",
        description="Annotate cells by similarity search: segment, embed through a model zoo, "
        "suggest classes from a reference set of confirmed cells.",
    )
    parser.add_argument("--version", action="version", version=f"cellseek {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("segment", help="segment the cells of images into label images")
    p.add_argument("images", nargs="+", help="image files, folders, glob patterns or list files "
                   "(TIFF, OME-TIFF, Lionheart, Nanolive, PNG, JPG, BMP, ...)")
    p.add_argument("-o", "--output", default="cellseek-labels",
                   help="folder for the label images, outside every input folder "
                   "(default ./cellseek-labels); one NAME_labels.tif per image, "
                   "NAME_tT_zZ_labels.tif per plane of a stack")
    add_common(p, models=False, segment=True, weights=True)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("embed", help="segment, crop and embed images into a reference store")
    p.add_argument("images", nargs="+", help="image files, folders, glob patterns or list files")
    p.add_argument("--store", required=True, help="reference store file (created if missing)")
    p.add_argument("--source", help="device / dataset / batch name recorded with the cells")
    p.add_argument("--workers", type=at_least(1),
                   help="run on a local Dask cluster with N workers")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler")
    add_common(p, segment=True)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("reference", help="add single-cell images with their classes "
                       "(CSV path,class[,source]) to a reference store as confirmed cells")
    p.add_argument("csv", help="CSV with columns path,class[,source] (a label column is read as "
                   "class); paths relative to it")
    p.add_argument("--store", required=True, help="reference store file (created if missing)")
    add_common(p)
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("suggest", help="suggest classes for the unconfirmed cells of a store")
    p.add_argument("images", nargs="*", help="images to add first (optional): files, folders, "
                   "glob patterns or list files")
    p.add_argument("--store", required=True, help="reference store file")
    p.add_argument("--read-only", action="store_true",
                   help="open the store read-only and leave it exactly as it is: print the "
                   "suggestions (and write the cells table with -o) without saving them, the "
                   "model weights or the search index (no images can be added then)")
    p.add_argument("--source", help="source name of the added images")
    p.add_argument("--threshold", type=fraction,
                   help="confidence below which a cell is uncertain (default "
                   f"{defaults.suggest.threshold}, or the store's saved setting)")
    p.add_argument("-o", "--output", help="write the cells table (CSV) here")
    p.add_argument("--accept-above", type=fraction, metavar="CONFIDENCE",
                   help="confirm every suggestion with at least this confidence (objects far "
                   "from a cell's size are skipped and counted)")
    p.add_argument("--workers", type=at_least(1), help="embed the images on a local Dask cluster")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler")
    p.add_argument("--pca", type=at_least(0), metavar="N",
                   help="index at most N principal components per model wider than N "
                   "(faster learned heads and search for large reference sets; default 0: the "
                   "full embeddings)")
    add_common(p, models=False)
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("evaluate", help="measure macro accuracy on labelled data")
    p.add_argument("--reference", required=True,
                   help="CSV of classified crops (path,class[,source]) or store (opened "
                   "read-only: never changed)")
    p.add_argument("--query", help="labelled set from another source (transfer; it must "
                   "share at least 2 classes with --reference)")
    p.add_argument("--folds", type=at_least(2), default=5,
                   help="folds of the cross-validation (5); at most the cell count of the "
                   "largest class, so that no fold is empty (a class with fewer cells than "
                   "folds is missing from some folds)")
    p.add_argument("--weighting", choices=WEIGHTING_MODES,
                   help=f"model weights (default {defaults.weighting.mode}, as in a session)")
    p.add_argument("--align", choices=ALIGN_METHODS,
                   help=f"per-source alignment of the embeddings (default "
                   f"{defaults.align.method}, as in a "
                   "session: class-balanced centring fitted on the query cells' own "
                   "suggestions; query labels are never used)")
    p.add_argument("--json", help="write the full result as JSON here")
    p.add_argument("--no-ablations", action="store_true", help="skip per-model/weighting rows")
    p.add_argument("--no-peers", action="store_true", help="skip the random forest and "
                   "logistic regression trained on the same features at 5, 20 and all labels "
                   "per class")
    p.add_argument("--reliability", metavar="PNG", help="also plot the reliability diagram "
                   "(accuracy per confidence bin) here")
    p.add_argument("--fields", metavar="BOXES_CSV", help="also segment whole fields and report "
                   "detection recall/precision against boxes (image,xmin,ymin,xmax,ymax,label,"
                   "wbc_type) and the accuracy of the suggested type of detected cells")
    p.add_argument("--growth", metavar="PNG", help="also simulate the annotation loop on the "
                   "reference set (review-queue vs random order) and plot it here")
    add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a store copy, the cells table and label images")
    p.add_argument("--store", required=True, help="reference store file (opened read-only: "
                   "never changed)")
    p.add_argument("-o", "--output", required=True, help="folder to write into (must be empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a folder that already holds files (same names are replaced)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("index", help="the search index saved with a store: status, build "
                       "(and save), drop")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
            ("status", "whether the store holds a saved index, whether it is current, and how "
                       "fast it opens (the store is opened read-only: never changed)"),
            ("build", "build the index from the confirmed cells now and save it with the store "
                      "(exits 1 when it cannot be saved)"),
            ("drop", "delete the saved index (it is built again on first use)")):
        a = actions.add_parser(action, help=text, description=text)
        a.add_argument("--store", required=True, help="reference store file")
        a.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        a.set_defaults(func=cmd_index)

    p = sub.add_parser("check", help="check a reference store (schema, values, embeddings, "
                       "label images); --repair removes SQL objects cellseek does not create")
    p.add_argument("store_path", nargs="?", metavar="STORE",
                   help="reference store file (or give it with --store); opened read-only "
                   "(never changed) unless --repair")
    p.add_argument("--store", dest="store_option", metavar="STORE",
                   help="reference store file, as in the other commands")
    p.add_argument("--repair", action="store_true", help="drop triggers, views and other SQL "
                   "objects cellseek never creates (a backup <store>.repair.bak is made first)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("merge", help="merge another reference store into this one (images and "
                       "cells deduplicated by content; the model sets must match)")
    p.add_argument("other", help="the store to import")
    p.add_argument("--store", required=True, help="the store to merge into")
    p.add_argument("--labels-only", action="store_true",
                   help="only copy classes onto cells both stores already share")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("models", help="list, download or check the model zoo")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text, names in (
            ("list", "the zoo: every model with its backend, size, licence and whether its "
                     "weights are on this machine (offline)", None),
            ("pull", "download the weights of models or presets and verify their digests (the "
                     "only command that uses the network)", "model or preset names"),
            ("check", "load models whose weights are present and embed a test crop (offline)",
             "model or preset names (default: every model whose weights are present)")):
        a = actions.add_parser(action, help=text, description=text)
        if names:
            a.add_argument("names", nargs="*", help=names)
        else:
            a.set_defaults(names=[])
        a.add_argument("--weights-dir", help="local weights folder (default "
                       "$CELLSEEK_WEIGHTS_DIR)")
        a.set_defaults(func=cmd_models)

    p = sub.add_parser("bench", help="measure embedding throughput, search latency, store speed")
    p.add_argument("--crops", type=at_least(1), default=512, help="crops to embed (512)")
    p.add_argument("--references", type=at_least(1), default=20_000, help="reference cells (20000)")
    p.add_argument("--queries", type=at_least(1), default=1000, help="query cells (1000)")
    p.add_argument("--random-weights", action="store_true", help="time timm-family models "
                   "built at random initialisation when their weights are absent (speed only)")
    p.add_argument("--index", action="store_true", help="index scaling benchmark instead")
    p.add_argument("--sam-click", action="store_true", help="SAM click-to-segment latency on a "
                   "cached image embedding instead (random weights when SAM's are absent)")
    p.add_argument("--sizes", type=sizes, default=sizes("10000,100000,1000000"),
                   help="--index: reference sizes (10000,100000,1000000)")
    p.add_argument("--dim", type=at_least(1), default=512,
                   help="--index, --saved-index: vector size (512)")
    p.add_argument("--merge", action="store_true", help="store merge benchmark instead: merge a "
                   "store of --cells synthetic cells into another")
    p.add_argument("--saved-index", action="store_true", help="saved-index benchmark instead: a "
                   "store of --cells confirmed cells of --dim values; open it and get the first "
                   "suggestion from the saved index, confirm one more cell, sizes")
    p.add_argument("--cells", type=at_least(1), default=100_000,
                   help="--merge, --saved-index: cells (100000)")
    p.add_argument("--json", help="write the results as JSON here")
    add_common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="run the whole loop on the bundled sample data")
    p.add_argument("-o", "--output", default="cellseek-demo",
                   help="output folder (default ./cellseek-demo)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``cellseek`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    from cellseek.config import check_environment
    from cellseek.errors import CellseekError

    try:
        check_environment()  # a malformed CELLSEEK_* variable: one line before any work
        return int(args.func(args) or 0)
    except CellseekError as err:
        print(f"cellseek: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cellseek: interrupted; everything confirmed before is saved", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
