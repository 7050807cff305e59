"""The store commands: ``export``, ``merge``, ``check`` and ``index``."""

from __future__ import annotations

from cellseek.cli.options import config_from_args
from cellseek.text import cells_text, classes_text


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
        print(f"classes now: {classes_text(store.classes())}")
    return 0


def cmd_check(args) -> int:
    from cellseek.errors import CellseekError
    from cellseek.store import ReferenceStore
    from cellseek.text import count_text

    given = [s for s in (args.store_path, args.store_option) if s]
    if len(given) != 1:
        raise CellseekError("name one reference store: `cellseek check STORE` or `cellseek "
                            "check --store STORE`" + (" (two were given)" if given else ""))
    path = given[0]
    with ReferenceStore.open(path, readonly=not args.repair, repair=args.repair) as store:
        problems = store.check()
    for line in problems:
        print(f"PROBLEM {line}")
    print(f"{path}: " + (f"{count_text(len(problems), 'problem')} found" if problems else
                         "intact (schema, values, embeddings, label images, thumbnails)"))
    return 1 if problems else 0


def cmd_index(args) -> int:
    """``cellseek index status|build|drop``: the search index saved with a store."""
    from cellseek.session import Session

    readonly = args.action == "status"
    with Session.open(args.store, config_from_args(args), readonly=readonly) as session:
        if args.action == "drop":
            had = session.drop_saved_index()
            print(f"{args.store}: " + ("saved index dropped (rebuilt on next use)" if had
                                       else "no saved index"))
            return 0
        if args.action == "build":
            import time

            from cellseek.cli.progress import progress_bars
            from cellseek.errors import StoreError

            start = time.perf_counter()
            try:
                with progress_bars(quiet=getattr(args, "quiet", False)) as bars:
                    index = session.rebuild_index(progress=bars)
            except StoreError as err:
                raise StoreError(f"the index was built but could not be saved: {err}") from err
            print(f"{args.store}: built and saved {_an(index.kind)} index of "
                  f"{cells_text(len(index))} in {time.perf_counter() - start:.1f} s")
            return 0
        info = session.store.search_state_info()
        if info is None:
            print(f"{args.store}: no saved index (built on first use: "
                  f"{cells_text(session.store.n_cells(labelled=True))} confirmed)")
            return 0
        current = info["key"] == session.state_key()
        state = "saved, current" if current else "saved for other settings (rebuilt on use)"
        detail = ""
        if current:
            import time

            start = time.perf_counter()
            index = session.index()
            seconds = time.perf_counter() - start
            if session.index_origin == "saved":
                detail = (f"; {index.kind} search over {cells_text(len(index))}, opened in "
                          f"{seconds:.2f} s (saved)")
            else:
                state = "saved but refused (see the warning above)"
                detail = (f"; {_an(index.kind)} search over {cells_text(len(index))} took "
                          f"{seconds:.2f} s to rebuild; `cellseek index build` saves it")
        print(f"{args.store}: {state}, {info['bytes'] / 1e6:.1f} MB, saved {info['saved_at']}"
              + detail)
    return 0


def _an(word: str) -> str:
    """``word`` with its indefinite article ("an exact", "a hnsw")."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
