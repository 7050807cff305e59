"""The image commands: ``segment``, ``embed``, ``reference`` and ``suggest``.

Each takes files, folders, glob patterns and list files, processes every image, keeps going when
one fails and ends with a tally (:mod:`cellseek.cli.images`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cellseek.cli.options import config_from_args
from cellseek.cli.progress import run_with_progress
from cellseek.errors import CellseekError, IncompatibleStoreError
from cellseek.text import cells_text, classes_text, count_text


def cmd_segment(args) -> int:
    from cellseek.cli.images import Tally, check_output_folder, image_inputs
    from cellseek.io import read_image, write_labels
    from cellseek.pipeline import Pipeline

    cfg = config_from_args(args)
    paths = image_inputs(args.images)
    out = Path(args.output)
    check_output_folder(out, args.images, paths)
    pipeline = Pipeline(cfg, ())
    tally, used = Tally(), set()
    for path in paths:
        try:
            image = read_image(path)
            labels = run_with_progress(pipeline.segment(image, z_mode=args.z_mode),
                                       quiet=args.quiet)
            stem = _unique_stem(Path(path), used)
            _output_folder(out)  # made once something is to be written: a failed run leaves none
            for (t, z), lab in labels.items():
                name = f"{stem}_labels.tif" if len(labels) == 1 else \
                    f"{stem}_t{t}_z{z}_labels.tif"
                write_labels(out / name, lab, pixel_size_um=image.pixel_size_um)
                print(f"{path} t={t} z={z}: {cells_text(int(lab.max()))} -> {out / name}")
            tally.done.append(str(path))
        except CellseekError as err:
            tally.fail(path, err)
    where = f" -> {out}" if tally.done else "; nothing was written"
    print(f"{tally.summary()} ({pipeline.segment_method()} segmentation){where}")
    return tally.exit_code


def _output_folder(out: Path) -> None:
    """Create the output folder with its marker (:data:`cellseek.io.inputs.LABELS_MARKER`)."""
    from cellseek.io.inputs import LABELS_MARKER

    marker = out / LABELS_MARKER
    if marker.exists():
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text("label images written by cellseek segment\n")
    except OSError as err:
        raise CellseekError(f"{out}: cannot write the label images there "
                            f"({err.strerror or err})") from None


#: Longest output stem in UTF-8 bytes (the file name stays below the usual 255-byte limit).
_MAX_STEM_BYTES = 200


def _unique_stem(path: Path, used: set[str]) -> str:
    """The file's stem (shortened to :data:`_MAX_STEM_BYTES`), unique among one run's outputs."""
    base = path.stem.encode("utf-8")[:_MAX_STEM_BYTES].decode("utf-8", "ignore")
    stem, n = base, 1
    while stem in used:
        n += 1
        stem = f"{base}_{n}"
    used.add(stem)
    return stem


def _open_or_create(store_path, cfg, args):
    """A session on the store (created when missing) and whether this command created it.

    ``--preset``/``--models`` naming another model set than an existing store holds is an
    error, not silently ignored.
    """
    from cellseek.errors import StoreExistsError
    from cellseek.session import Session

    created = False
    if Path(store_path).exists():
        session = Session.open(store_path, cfg)
    else:
        try:
            session, created = Session.create(store_path, cfg), True
        except StoreExistsError:  # another command created it a moment ago: use that one
            session = Session.open(store_path, cfg)
    if not created:
        try:
            _check_requested_models(store_path, cfg, args, session.models)
        except IncompatibleStoreError:
            session.close()
            raise
    return session, created


def _check_requested_models(store_path, cfg, args, held=None) -> None:
    """Refuse ``--preset``/``--models`` naming another model set than an existing store holds
    (``held``: its models, read from the store when not given)."""
    from cellseek.pipeline import resolve_models

    if not (getattr(args, "preset", None) or getattr(args, "models", None)):
        return
    if held is None:
        if not Path(store_path).exists():
            return
        from cellseek.session import Session

        with Session.open(store_path, cfg, readonly=True) as session:
            held = session.models
    wanted = resolve_models(cfg)
    if tuple(wanted) != tuple(held):
        raise IncompatibleStoreError(
            f"{store_path}: this reference set holds the models {', '.join(held)}; "
            f"--preset/--models asked for {', '.join(wanted)}. Leave them out, or give a new "
            "--store.")


def _check_scheduler(args) -> None:
    """One line for a ``--scheduler`` that is malformed, down or not a Dask scheduler, before
    anything is read or written."""
    from cellseek.batch.runner import SYNC

    if args.scheduler and args.scheduler not in SYNC:
        from cellseek.batch.scheduler import check_scheduler

        check_scheduler(args.scheduler)


def _remove_new_store(path) -> None:
    """Remove a store this command created and could not fill (nothing of the user's is lost)."""
    from cellseek.store.files import remove_store_files

    remove_store_files(path)
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
                print(f"{path}: already in the store ({cells_text(n)}, image id {image_id})")
            else:
                tally.done.append(str(path))
                print(f"{path}: {cells_text(n)} (image id {image_id})")
        except CellseekError as err:
            tally.fail(path, err)


def cmd_embed(args) -> int:
    from cellseek.cli.images import Tally, image_inputs

    cfg = config_from_args(args)
    if args.workers or args.scheduler:
        from cellseek.batch.runner import embed_many

        _check_scheduler(args)
        _check_requested_models(args.store, cfg, args)
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
        print(f"{tally.summary()}; {args.store}: {cells_text(session.store.n_cells())}, "
              f"{session.store.n_cells(labelled=True)} confirmed")
    finally:
        empty = session.store.n_cells() == 0 and not session.store.images()
        session.close()
        if created and empty:
            _remove_new_store(args.store)
    return tally.exit_code


def cmd_reference(args) -> int:
    from cellseek.reference import add_labelled_csv, check_labelled_csv

    cfg = config_from_args(args)
    checked = run_with_progress(check_labelled_csv(args.csv), quiet=args.quiet)  # before writing
    session, created = _open_or_create(args.store, cfg, args)
    try:
        before = session.store.n_cells(labelled=True)
        n = run_with_progress(add_labelled_csv(session, args.csv, checked=checked),
                              quiet=args.quiet)
        total = session.store.n_cells(labelled=True)
        print(f"{args.store}: added {count_text(n, 'confirmed cell')} ({before} confirmed before, "
              f"{total} now); classes: {classes_text(session.store.classes())}")
    finally:
        empty = session.store.n_cells() == 0
        session.close()
        if created and empty:
            _remove_new_store(args.store)
    return 0


def cmd_suggest(args) -> int:
    from cellseek.cli.images import Tally, image_inputs
    from cellseek.session import Session

    if args.read_only and args.images:
        raise CellseekError("--read-only adds no images to the store; leave the images out or "
                            "drop --read-only")
    cfg = config_from_args(args)
    if args.images and (args.workers or args.scheduler):
        from cellseek.batch.runner import suggest_many

        _check_scheduler(args)
        summary = suggest_many(args.images, args.store, cfg, csv_path=args.output,
                               scheduler=args.scheduler, n_workers=args.workers,
                               progress=not args.quiet, source=args.source)
        summary.pop("results", None)
        print(json.dumps(summary, indent=2, default=str))
        return 1 if summary["failed"] else 0
    paths = image_inputs(args.images) if args.images else []
    tally = Tally()
    with Session.open(args.store, cfg, readonly=args.read_only) as session:
        if paths:
            _add_images(session, paths, args, tally)
            print(tally.summary())
        if not session.store.n_cells(labelled=True):
            raise CellseekError(f"{args.store}: no confirmed cells to suggest from; add a CSV "
                                "of classified crops first (cellseek reference CSV --store ...)")
        weights = session.model_weights(refresh=True)
        sugg = run_with_progress(session.suggest(), quiet=args.quiet)
        n_uncertain = sum(s.uncertain for s in sugg.values())
        print(f"{cells_text(len(sugg))}: {len(sugg) - n_uncertain} suggested, "
              f"{n_uncertain} uncertain (threshold {session.config.suggest.threshold})")
        print("model weights: " + ", ".join(f"{m}={w:.3f}" for m, w in weights.items()))
        if getattr(args, "accept_above", None) is not None:
            accepted, skipped = session.accept_above(sugg, args.accept_above)
            kinds = ", ".join(f"{sum(v == k for v in skipped.values())} {k}"
                              for k in ("fragment", "oversized") if k in skipped.values())
            print(f"accepted {cells_text(len(accepted))} at confidence >= {args.accept_above}"
                  + (f"; skipped {cells_text(len(skipped))} far from a cell's size ({kinds}): "
                     "confirm them one by one" if skipped else ""))
        if args.output:
            session.store.export_cells_csv(args.output,
                                           suggestions=sugg if args.read_only else None)
            print(f"cells table -> {args.output}")
        if args.read_only:
            print(f"{args.store}: opened read-only, nothing was saved in it")
    return tally.exit_code
