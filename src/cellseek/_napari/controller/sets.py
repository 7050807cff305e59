"""The reference set of one widget: create, open, import, export, classes, index and weights.

Each step is a job on the runner's queue; the results update the state (classes, colours) and
tell the panels through the signals.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cellseek._napari.notify import info
from cellseek._napari.runner import call_work
from cellseek.annotation.cells import CellTable
from cellseek.annotation.review import ReviewQueue
from cellseek.errors import CellseekError
from cellseek.text import count_text
from cellseek.types import Progress


def weights_refusal(preset: str, models=(), weights_dir=None) -> str | None:
    """Why a new reference set for a preset (or chosen models) is refused, in one sentence;
    None when every model's weights are on this machine.

    A set's models are fixed for its life, so a set whose weights are missing could never
    embed a cell. The default preset is offered when its weights are all here.
    """
    from cellseek.config import EmbedConfig
    from cellseek.zoo import PRESETS, weights_available

    names = tuple(models) or tuple(PRESETS.get(preset, ()))
    missing = [m for m in names if not weights_available(m, weights_dir)[0]]
    if not missing:
        return None
    what = "the chosen models need" if models else f"the preset {preset!r} needs"
    default = EmbedConfig().preset
    offer = ""
    if (models or preset != default) and all(
            weights_available(m, weights_dir)[0] for m in PRESETS.get(default, ("?",))):
        offer = f"choose the {default!r} preset, whose models are all here, or "
    return (f"{what} weights that are not on this machine ({', '.join(missing)}): {offer}get "
            "them with `cellseek models pull NAME`; no reference set was created")


#: The counts of an import, in the glossary's words.
IMPORT_WORDS = {
    "images_added": "images added", "images_matched": "images already there",
    "cells_added": "cells added", "cells_matched": "cells already there",
    "labels_added": "classes confirmed", "labels_unchanged": "classes already the same",
    "label_conflicts": "class conflicts",
}


class ReferenceSets:
    """Reference-set actions of the controller.

    Parameters
    ----------
    jobs : SessionJobs
        Jobs on the open reference set (and the runner they go to).
    state : AnnotationState
    signals : Signals
    registry : LayerRegistry
        The open images (their store ids are forgotten when the set changes).
    view : CellsView
        Colours and hover tables.
    on_opened : callable
        Called without arguments once a set is open (the controller links the open images).
    """

    def __init__(self, jobs, state, signals, registry, view, on_opened) -> None:
        self.jobs = jobs
        self.state = state
        self.signals = signals
        self.registry = registry
        self.view = view
        self.on_opened = on_opened

    # ------------------------------------------------------------------ open / create
    def create(self, path, *, preset: str | None = None, models=()):
        """Create a reference set at ``path`` for the chosen models and open it (a job).

        A set already open is closed first, so a new set over the same file starts clean.
        """
        state = self.state
        embed = replace(state.config.embed, preset=preset or state.config.embed.preset,
                        models=tuple(models))
        state.config = config = replace(state.config, embed=embed)
        old = self.detach()

        def work():
            yield Progress(0, 2, "store", "looking for the models' weights")
            refused = weights_refusal(embed.preset, embed.models, embed.weights_dir)
            if refused is not None:
                raise CellseekError(refused)
            yield Progress(1, 2, "store", "creating the reference set")
            from cellseek.session import Session  # imports scipy and skimage: not on the GUI

            if old is not None:
                old.close()
            return Session.create(path, config, overwrite=True)

        def refused(_exc):
            # nothing was created and the set that was open is still open: it stays, and what
            # was asked for the new set meanwhile is dropped
            self.jobs.runner.drop_waiting()
            if old is not None and self.state.session is None:
                self.attach(old)

        return self._store_job("Creating the reference set", work, on_error=refused)

    def open(self, path):
        """Open an existing reference set (a job)."""
        config = self.state.config
        old = self.detach()

        def work():
            yield Progress(0, 1, "store", "opening the reference set")
            from cellseek.session import Session  # imports scipy and skimage: not on the GUI

            if old is not None:
                old.close()
            return Session.open(path, config)

        return self._store_job("Opening the reference set", work)

    def _store_job(self, what, work, on_error=None):
        job = self.jobs.runner.run(what, work, on_returned=self.attach, on_error=on_error)
        self.jobs.track_store_job(job)
        return job

    def detach(self):
        """Forget the open session (the job that replaces it closes it)."""
        state = self.state
        old, state.session = state.session, None
        for item in self.registry.images:
            item.image_id, item.table = None, CellTable()
        if old is not None:
            self.signals.session_changed.emit()
        return old

    def attach(self, session) -> None:
        """Make ``session`` the open reference set."""
        state = self.state
        state.session = session
        state.suggestions = {}
        state.queue = ReviewQueue()
        state.selected = None
        state.threshold = session.config.suggest.threshold
        self.refresh_classes()
        self.signals.session_changed.emit()
        self.on_opened()
        self.warm_up()

    def warm_up(self):
        """Build the reference index in a job (imports FAISS off the GUI thread)."""
        progress = self.jobs.runner.progress

        def work(session):
            yield Progress(0, 1, "index", "preparing the reference index")
            # one step (Cancel cannot stop it midway, see call_work); a rebuild reports its
            # progress through the runner's signal, which Qt delivers on the GUI thread
            session.index(progress=progress.emit)

        return self.jobs.run("Preparing the index", work)

    # ------------------------------------------------------------------ import / export
    def export(self, folder):
        """Export the store copy, the cells CSV and the label images into an empty or new
        folder (a job)."""
        def work(session):
            target = Path(folder)
            if target.is_dir() and any(target.iterdir()):
                raise CellseekError(f"{target} already holds files; choose an empty or new "
                                    "folder (nothing was written)")
            return (yield from call_work(session.export, target))

        return self.jobs.run(
            "Export", work, on_returned=lambda paths: info(
                f"Exported {count_text(len(paths), 'file')} to {folder}"))

    def import_store(self, path):
        """Merge another reference set into this one (a job)."""
        return self.jobs.run("Import", lambda s: call_work(s.import_reference, path),
                             on_returned=self._after_import)

    def import_labelled_csv(self, path):
        """Add single-cell images with their classes (a ``path,class[,source]`` CSV) as
        confirmed cells."""

        def work(session):
            from cellseek.reference import add_labelled_csv  # in the worker: heavy imports

            return (yield from add_labelled_csv(session, path))

        return self.jobs.run("Import of crops", work, on_returned=self._after_import)

    def _after_import(self, result) -> None:
        if isinstance(result, dict):
            said = [f"{v} {IMPORT_WORDS.get(k, k.replace('_', ' '))}" for k, v in result.items()
                    if v]
            info("Imported: " + (", ".join(said) or "nothing new") + ".")
        else:
            info(f"Imported {count_text(result, 'crop')} as confirmed cells.")
        self.reload_tables()

    def reload_tables(self):
        """Read the cells of every open image from the store again (a job), e.g. after an
        import or a class change."""
        registry, view = self.registry, self.view

        def work(session):
            items = [i for i in registry.images if i.image_id is not None]
            yield Progress(0, 1, "store", "reading the cells")
            session.refresh()
            return [(i, CellTable(session.image_cells(i.image_id))) for i in items]

        def done(tables):
            for item, table in tables:
                item.table = table
                view.keep_suggestions(item, table.ids())
            self.refresh_classes()
            view.refresh_all()
            self.signals.labels_changed.emit()
            self.warm_up()

        return self.jobs.run("Reading the reference set", work, on_returned=done, quiet=True)

    # ------------------------------------------------------------------ classes
    def refresh_classes(self) -> None:
        """Read the classes (creation order, keys, colours, counts) of the open store."""
        state = self.state
        state.classes = state.session.classes() if state.session is not None else []
        state.colours = {c.name: c.colour for c in state.classes}
        self.signals.classes_changed.emit()

    def class_of_key(self, number: int) -> str:
        """The class number key ``number`` gives (as the class table shows it)."""
        self.jobs.need_session()
        for cls in self.state.classes:
            if cls.key == number:
                return cls.name
        raise CellseekError(f"there is no class {number}; add classes in the Reference set tab")

    def add_class(self, name: str):
        """Add a class (it appears in the list, with the next key, before any cell has it)."""
        return self.jobs.run("Adding a class", lambda s: call_work(s.add_class, name),
                             on_returned=lambda _: self.refresh_classes(), quiet=True)

    def rename_class(self, old: str, new: str):
        """Rename a class everywhere (a job)."""
        return self.jobs.run("Renaming a class", lambda s: call_work(s.rename_class, old, new),
                             on_returned=lambda _: self.reload_tables())

    def merge_classes(self, sources, into: str):
        """Merge classes into one (a job)."""
        sources = list(sources)
        return self.jobs.run("Merging classes",
                             lambda s: call_work(s.merge_classes, sources, into),
                             on_returned=lambda _: self.reload_tables())

    # ------------------------------------------------------------------ plots and weights
    def embedding_map(self, method: str, on_returned):
        """2-D map of the cells in the session's search space (a job)."""
        from cellseek.annotation.embedding_map import session_map

        return self.jobs.run("Embedding map",
                             lambda s: call_work(session_map, s, method=method),
                             on_returned=on_returned)

    def recompute_weights(self, on_returned):
        """Recompute the entropy-guided model weights and rebuild the index (a job)."""
        def work(session):
            yield Progress(0, 2, "weights", "entropy of each model's neighbourhoods")
            weights = session.model_weights(refresh=True)
            yield Progress(1, 2, "index", "rebuilding the index")
            session.rebuild_index()
            yield Progress(2, 2, "index", "done")
            return weights

        return self.jobs.run("Recomputing the model weights", work, on_returned=on_returned)
