"""The ``cellseek`` command line. Heavy modules are imported after the arguments are parsed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cellseek import __version__
from cellseek.cli.progress import run_with_progress
from cellseek.errors import CellseekError, IncompatibleStoreError

logger = logging.getLogger("cellseek")


def at_least(low: int):
    """An argparse type: an integer not below ``low`` (a clear message otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def fraction(text: str) -> float:
    """An argparse type: a number between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def sizes(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive integers."""
    parse = at_least(1)
    return tuple(parse(s) for s in text.split(",") if s.strip())


def _config(args):
    """A :class:`cellseek.config.Config` from the common options."""
    from dataclasses import replace

    from cellseek.config import Config

    cfg = Config()
    embed = cfg.embed
    if getattr(args, "preset", None):
        embed = replace(embed, preset=args.preset)
    if getattr(args, "models", None):
        embed = replace(embed, models=tuple(m.strip() for m in args.models.split(",") if m))
    if getattr(args, "weights_dir", None):
        embed = replace(embed, weights_dir=args.weights_dir)
    if getattr(args, "device", None):
        embed = replace(embed, device=args.device)
    segment = cfg.segment
    if getattr(args, "method", None):
        segment = replace(segment, method=args.method)
    if getattr(args, "min_area", None) is not None:
        segment = replace(segment, min_area=args.min_area)
    suggest = cfg.suggest
    if getattr(args, "threshold", None) is not None:
        suggest = replace(suggest, threshold=args.threshold)
    index = cfg.index
    if getattr(args, "pca", None):
        index = replace(index, pca_components=args.pca)
    weighting = cfg.weighting
    if getattr(args, "weighting", None):
        weighting = replace(weighting, mode=args.weighting)
    align = cfg.align
    if getattr(args, "align", None):
        align = replace(align, method=args.align)
    return replace(cfg, embed=embed, segment=segment, suggest=suggest, index=index,
                   weighting=weighting, align=align)


# ------------------------------------------------------------------------------- commands
def cmd_segment(args) -> int:
    from cellseek.cli.images import Tally, check_output_folder, image_inputs
    from cellseek.io import read_image, write_labels
    from cellseek.io.inputs import LABELS_MARKER
    from cellseek.pipeline import Pipeline

    cfg = _config(args)
    paths = image_inputs(args.images)
    out = Path(args.output)
    check_output_folder(out, args.images)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / LABELS_MARKER).write_text("label images written by cellseek segment\n")
    except OSError as err:
        raise CellseekError(f"{out}: cannot write the label images there ({err})") from err
    pipeline = Pipeline(cfg, ())
    tally, used = Tally(), set()
    for path in paths:
        try:
            image = read_image(path)
            labels = run_with_progress(pipeline.segment(image, z_mode=args.z_mode),
                                       quiet=args.quiet)
            stem = _unique_stem(Path(path), used)
            for (t, z), lab in labels.items():
                name = f"{stem}_labels.tif" if len(labels) == 1 else \
                    f"{stem}_t{t}_z{z}_labels.tif"
                write_labels(out / name, lab)
                print(f"{path} t={t} z={z}: {_cells(int(lab.max()))} -> {out / name}")
            tally.done.append(str(path))
        except CellseekError as err:
            tally.fail(path, err)
    print(f"{tally.summary()} ({pipeline.segment_method()} segmentation) -> {out}")
    return tally.exit_code


def _cells(n: int) -> str:
    return f"{n} cell" + ("" if n == 1 else "s")


def _unique_stem(path: Path, used: set[str]) -> str:
    """The file's stem, made unique among the outputs of one run."""
    stem, n = path.stem, 1
    while stem in used:
        n += 1
        stem = f"{path.stem}_{n}"
    used.add(stem)
    return stem


def _open_or_create(store_path, cfg, args):
    """A session on the store (created when missing) and whether this command created it.

    ``--preset``/``--models`` naming another model set than an existing store holds is an
    error, not silently ignored.
    """
    from cellseek.errors import StoreExistsError
    from cellseek.pipeline import resolve_models
    from cellseek.session import Session

    created = False
    if Path(store_path).exists():
        session = Session.open(store_path, cfg)
    else:
        try:
            session, created = Session.create(store_path, cfg), True
        except StoreExistsError:  # another command created it a moment ago: use that one
            session = Session.open(store_path, cfg)
    if not created and (getattr(args, "preset", None) or getattr(args, "models", None)):
        wanted = resolve_models(cfg)
        if tuple(wanted) != tuple(session.models):
            session.close()
            raise IncompatibleStoreError(
                f"{store_path}: this reference set holds the models "
                f"{', '.join(session.models)}; --preset/--models asked for "
                f"{', '.join(wanted)}. Leave them out, or give a new --store.")
    return session, created


def _remove_new_store(path) -> None:
    """Remove a store this command created and could not fill (nothing of the user's is lost)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    print(f"cellseek: {path} was not kept: nothing was added to it", file=sys.stderr)


def _add_images(session, paths, args, tally) -> None:
    """Segment, crop and embed every image into the session's store."""
    from cellseek.io import content_hash, read_image

    for path in paths:
        try:
            image = read_image(path)
            known = session.store.image_by_hash(content_hash(image))
            before = len(session.store.cells(known["id"])) if known else 0
            image_id = run_with_progress(
                session.add_image(image, source=args.source,
                                  z_mode=getattr(args, "z_mode", "all")),
                quiet=args.quiet)
            n = len(session.store.cells(image_id))
            if known is not None and n == before:
                tally.skipped.append(str(path))
                print(f"{path}: already in the store ({_cells(n)}, image id {image_id})")
            else:
                tally.done.append(str(path))
                print(f"{path}: {_cells(n)} (image id {image_id})")
        except CellseekError as err:
            tally.fail(path, err)


def cmd_embed(args) -> int:
    from cellseek.cli.images import Tally, image_inputs

    cfg = _config(args)
    if args.workers or args.scheduler:
        from cellseek.batch.runner import embed_many

        summary = embed_many(args.images, args.store, cfg, scheduler=args.scheduler,
                             n_workers=args.workers, progress=not args.quiet,
                             plane_kw={"z_mode": args.z_mode}, source=args.source)
        summary.pop("results", None)  # one entry per image: too long for the terminal
        print(json.dumps(summary, indent=2, default=str))
        return 1 if summary["failed"] else 0
    paths = image_inputs(args.images)
    session, created = _open_or_create(args.store, cfg, args)
    tally = Tally()
    try:
        _add_images(session, paths, args, tally)
        print(f"{tally.summary()}; {args.store}: {_cells(session.store.n_cells())}, "
              f"{session.store.n_cells(labelled=True)} labelled")
    finally:
        empty = session.store.n_cells() == 0 and not session.store.images()
        session.close()
        if created and empty:
            _remove_new_store(args.store)
    return tally.exit_code


def cmd_reference(args) -> int:
    from cellseek.reference import add_labelled_csv, check_labelled_csv

    cfg = _config(args)
    checked = run_with_progress(check_labelled_csv(args.csv), quiet=args.quiet)  # before writing
    session, created = _open_or_create(args.store, cfg, args)
    try:
        before = session.store.n_cells(labelled=True)
        n = run_with_progress(add_labelled_csv(session, args.csv, checked=checked),
                              quiet=args.quiet)
        total = session.store.n_cells(labelled=True)
        print(f"{args.store}: added {n} labelled cells ({before} labelled before, {total} now); "
              f"classes: {session.store.classes()}")
    finally:
        empty = session.store.n_cells() == 0
        session.close()
        if created and empty:
            _remove_new_store(args.store)
    return 0


def cmd_suggest(args) -> int:
    from cellseek.cli.images import Tally, image_inputs
    from cellseek.session import Session

    cfg = _config(args)
    if args.images and (args.workers or args.scheduler):
        from cellseek.batch.runner import suggest_many

        summary = suggest_many(args.images, args.store, cfg, csv_path=args.output,
                               scheduler=args.scheduler, n_workers=args.workers,
                               progress=not args.quiet, source=args.source)
        summary.pop("results", None)
        print(json.dumps(summary, indent=2, default=str))
        return 1 if summary["failed"] else 0
    paths = image_inputs(args.images) if args.images else []
    tally = Tally()
    with Session.open(args.store, cfg) as session:
        if paths:
            _add_images(session, paths, args, tally)
            print(tally.summary())
        if not session.store.n_cells(labelled=True):
            raise CellseekError(f"{args.store}: no confirmed cells to suggest from; add a "
                                "labelled set first (cellseek reference CSV --store ...)")
        weights = session.model_weights(refresh=True)
        sugg = run_with_progress(session.suggest(), quiet=args.quiet)
        n_uncertain = sum(s.uncertain for s in sugg.values())
        print(f"{_cells(len(sugg))}: {len(sugg) - n_uncertain} suggested, "
              f"{n_uncertain} uncertain (threshold {session.config.suggest.threshold})")
        print("model weights: " + ", ".join(f"{m}={w:.3f}" for m, w in weights.items()))
        if args.output:
            session.store.export_cells_csv(args.output)
            print(f"cells table -> {args.output}")
    return tally.exit_code


def cmd_evaluate(args) -> int:
    from cellseek.measure.evaluate import evaluate, format_table
    from cellseek.pipeline import resolve_models

    cfg = _config(args)
    models = resolve_models(cfg)
    result = run_with_progress(
        evaluate(args.reference, args.query, models=models, folds=args.folds, config=cfg,
                 run_ablations=not args.no_ablations, peers=not args.no_peers),
        quiet=args.quiet,
    )
    print(format_table(result))
    if args.reliability:
        from cellseek.measure.calibration import plot_reliability

        title = f"{result['mode']}: {Path(args.reference).stem}" + (
            f" -> {Path(args.query).stem}" if args.query else "")
        plot_reliability({title: result["reliability"]}, args.reliability,
                         threshold=cfg.suggest.threshold)
        print(f"reliability diagram -> {args.reliability}")
    if args.fields:
        from cellseek.measure.evaluate import load_eval_set
        from cellseek.measure.fields import evaluate_fields

        data = run_with_progress(load_eval_set(args.reference, models, cfg), quiet=args.quiet)
        f = run_with_progress(evaluate_fields(args.fields, data, config=cfg), quiet=args.quiet)
        result["fields"] = f
        print(f"whole fields ({f['n_fields']}): detection recall {100 * f['recall']:.1f} %, "
              f"precision {100 * f['precision']:.1f} %, mean IoU {f['mean_iou']:.2f} "
              f"at IoU >= {f['iou_threshold']}")
        if "type_macro_accuracy" in f:
            print(f"suggested type of the {f['n_typed']} detected typed cells "
                  f"(alignment {f['align']}): macro accuracy "
                  f"{100 * f['type_macro_accuracy']:.1f} %  " + ", ".join(
                      f"{c} {100 * r:.0f} %" for c, r in f["type_per_class_recall"].items()))
    if args.growth:
        from cellseek.measure.evaluate import load_eval_set
        from cellseek.measure.growth import plot_growth, simulate_growth

        data = run_with_progress(load_eval_set(args.reference, models, cfg), quiet=args.quiet)
        result["growth"] = run_with_progress(simulate_growth(data, config=cfg), quiet=args.quiet)
        plot_growth(result["growth"], args.growth)
        for c in result["growth"]["curves"]:
            print(f"growth: start {c['start_per_class']}/class, {c['order']:<12}: "
                  f"{100 * c['macro_accuracy'][0]:.1f} % at {c['n_labelled'][0]} cells -> "
                  f"{100 * c['macro_accuracy'][-1]:.1f} % at {c['n_labelled'][-1]} cells")
        print(f"growth plot -> {args.growth}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"JSON -> {args.json}")
    return 0


def cmd_export(args) -> int:
    from cellseek.session import Session

    with Session.open(args.store, readonly=True) as session:
        paths = session.export(args.output, overwrite=args.overwrite)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_merge(args) -> int:
    from cellseek.store import ReferenceStore

    with ReferenceStore.open(args.store) as store:
        counts = store.merge_from(args.other, labels_only=args.labels_only)
        print(f"{args.store}: merged {args.other}: " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
        print(f"classes now: {store.classes()}")
    return 0


def cmd_check(args) -> int:
    from cellseek.store import ReferenceStore

    with ReferenceStore.open(args.store, readonly=not args.repair, repair=args.repair) as store:
        problems = store.check()
    for line in problems:
        print(f"PROBLEM {line}")
    print(f"{args.store}: " + (f"{len(problems)} problem(s) found" if problems else
                               "intact (schema, values, embeddings, label images, thumbnails)"))
    return 1 if problems else 0


def cmd_index(args) -> int:
    """``cellseek index status|build|drop``: the search index saved with a store."""
    from cellseek.session import Session

    readonly = args.action == "status"
    with Session.open(args.store, _config(args), readonly=readonly) as session:
        if args.action == "drop":
            had = session.drop_saved_index()
            print(f"{args.store}: " + ("saved index dropped (rebuilt on next use)" if had
                                       else "no saved index"))
            return 0
        if args.action == "build":
            import time

            start = time.perf_counter()
            index = session.rebuild_index()
            print(f"{args.store}: built and saved a {index.kind} index of "
                  f"{_cells(len(index))} in {time.perf_counter() - start:.1f} s")
            return 0
        info = session.store.search_state_info()
        if info is None:
            print(f"{args.store}: no saved index (built on first use: "
                  f"{_cells(session.store.n_cells(labelled=True))} confirmed)")
            return 0
        current = info["key"] == session.state_key()
        state = "saved, current" if current else "saved for other settings (rebuilt on use)"
        detail = ""
        if current:
            import time

            start = time.perf_counter()
            index = session.index()
            detail = (f"; {index.kind} search over {_cells(len(index))}, opened in "
                      f"{time.perf_counter() - start:.2f} s ({session.index_origin})")
        print(f"{args.store}: {state}, {info['bytes'] / 1e6:.1f} MB, saved {info['saved_at']}"
              + detail)
    return 0


def cmd_models(args) -> int:
    from cellseek.cli import models as models_cli

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


def cmd_bench(args) -> int:
    if args.merge:
        from cellseek.measure.bench_merge import bench_merge, format_merge

        result = bench_merge(n_cells=args.cells)
        print(format_merge(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    if args.saved_index:
        from cellseek.measure.bench_saved_index import format_result, run

        result = run(args.cells, args.dim)
        print(format_result(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    if args.index:
        from cellseek.measure.bench_index import main_args

        main_args(sizes=args.sizes, dim=args.dim, n_queries=args.queries)
        return 0
    from cellseek.measure.bench import bench_sam_click, format_results, run_benchmarks

    cfg = _config(args)
    if args.sam_click:
        results = bench_sam_click(weights_dir=cfg.embed.weights_dir)
        print(format_results(results))
        return 0
    results = run_benchmarks(cfg, n_crops=args.crops, n_reference=args.references,
                             n_queries=args.queries, random_weights=args.random_weights)
    print(format_results(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def cmd_demo(args) -> int:
    from cellseek.cli.demo import run_demo

    run_demo(args.output, quiet=args.quiet)
    return 0


# ------------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser, *, models=True, segment=False,
            weights: bool | None = None) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    if models:
        p.add_argument("--preset", help="model preset: offline (default), fast, paper, hematology")
        p.add_argument("--models", help="comma-separated model names (overrides --preset)")
    if models if weights is None else weights:
        p.add_argument("--weights-dir", help="local folder of model weights, SAM's included "
                       "(default $CELLSEEK_WEIGHTS_DIR)")
        p.add_argument("--device", help="auto (default), cpu, cuda or mps")
    if segment:
        p.add_argument("--method", choices=["auto", "sam", "classical"],
                       help="segmenter (default auto: SAM when its weights are present)")
        p.add_argument("--min-area", type=at_least(0),
                       help="drop objects smaller than this (pixels)")
        p.add_argument("--z-mode", default="all",
                       choices=["all", "index", "best_focus", "max", "mean"],
                       help="which planes of a z-stack to use (default all)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cellseek`` command."""
    from cellseek.config import Config
    from cellseek.search.align import ALIGN_METHODS
    from cellseek.search.weighting import WEIGHTING_MODES

    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="cellseek",
        description="Annotate cells by similarity search: segment, embed through a model zoo, "
        "suggest labels from a reference set of labelled cells.",
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
    _common(p, models=False, segment=True, weights=True)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("embed", help="segment, crop and embed images into a reference store")
    p.add_argument("images", nargs="+", help="image files, folders, glob patterns or list files")
    p.add_argument("--store", required=True, help="reference store file (created if missing)")
    p.add_argument("--source", help="device / dataset / batch name recorded with the cells")
    p.add_argument("--workers", type=at_least(1),
                   help="run on a local Dask cluster with N workers")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler")
    _common(p, segment=True)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("reference", help="add a labelled set of single-cell images "
                       "(CSV path,label[,source]) to a reference store")
    p.add_argument("csv", help="CSV with columns path,label[,source]; paths relative to it")
    p.add_argument("--store", required=True, help="reference store file (created if missing)")
    _common(p)
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("suggest", help="suggest labels for the unlabelled cells of a store")
    p.add_argument("images", nargs="*", help="images to add first (optional): files, folders, "
                   "glob patterns or list files")
    p.add_argument("--store", required=True, help="reference store file")
    p.add_argument("--source", help="source name of the added images")
    p.add_argument("--threshold", type=fraction,
                   help="confidence below which a cell is uncertain")
    p.add_argument("-o", "--output", help="write the cells table (CSV) here")
    p.add_argument("--workers", type=at_least(1), help="embed the images on a local Dask cluster")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler")
    p.add_argument("--pca", type=at_least(0), metavar="N",
                   help="index at most N principal components "
                   "per model (smaller, faster index for very large reference sets; default: off)")
    _common(p, models=False)
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("evaluate", help="measure macro accuracy on labelled data")
    p.add_argument("--reference", required=True, help="labelled CSV (path,label[,source]) or store")
    p.add_argument("--query", help="labelled set from another source (transfer)")
    p.add_argument("--folds", type=at_least(2), default=5, help="folds of the cross-validation (5)")
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
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a store copy, the cells table and label images")
    p.add_argument("--store", required=True, help="reference store file")
    p.add_argument("-o", "--output", required=True, help="folder to write into (must be empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a folder that already holds files (same names are replaced)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("index", help="the search index saved with a store: status, build "
                       "(and save), drop")
    p.add_argument("action", choices=["status", "build", "drop"])
    p.add_argument("--store", required=True, help="reference store file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("check", help="check a reference store (schema, values, embeddings, "
                       "label images); --repair removes SQL objects cellseek does not create")
    p.add_argument("store", help="reference store file")
    p.add_argument("--repair", action="store_true", help="drop triggers, views and other SQL "
                   "objects cellseek never creates (a backup <store>.repair.bak is made first)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("merge", help="merge another reference store into this one (images and "
                       "cells deduplicated by content; the model sets must match)")
    p.add_argument("other", help="the store to import")
    p.add_argument("--store", required=True, help="the store to merge into")
    p.add_argument("--labels-only", action="store_true",
                   help="only copy labels onto cells both stores already share")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("models", help="list, download or check the model zoo")
    p.add_argument("action", choices=["list", "pull", "check"])
    p.add_argument("names", nargs="*", help="model or preset names (pull; check: default "
                   "every model present)")
    p.add_argument("--weights-dir", help="local weights folder (default $CELLSEEK_WEIGHTS_DIR)")
    p.set_defaults(func=cmd_models)

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
                   help="--index: reference sizes")
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
    _common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="run the whole loop on the bundled sample data")
    p.add_argument("-o", "--output", default="cellseek-demo", help="output folder")
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
    from cellseek.errors import CellseekError

    try:
        return int(args.func(args) or 0)
    except CellseekError as err:
        print(f"cellseek: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cellseek: interrupted; everything confirmed before is saved", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
