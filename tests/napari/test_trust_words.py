"""Issue 22 in the real threaded window: a hidden panel owns no keys (item 2), New... refuses a
preset without weights (item 4), an honest status line (item 5), one vocabulary (item 6),
short messages (item 7) and plots that show their data (item 10)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

pytestmark = pytest.mark.napari

LEFT = Qt.MouseButton.LeftButton


def _canvas(viewer):
    return viewer.window._qt_viewer.canvas.native


@pytest.fixture
def suggested(plugin_widget, wait, tmp_path):
    """The sample segmented and embedded, the bundled crops imported, strict suggestions."""
    w = plugin_widget
    w.segment.method.setCurrentText("classical")
    w.segment.run(whole_stack=True)
    w.reference.new_store(tmp_path / "ref.cellseek")
    w.reference.add_bundled_crops()
    w.suggest.slider.setValue(90)
    w.suggest.run("stack")
    wait(w)
    return w


# ---------------------------------------------------------------------------- item 2
def test_a_hidden_panel_owns_no_keys(suggested, wait, qtbot):
    w = suggested
    viewer, c = w.viewer, w.controller
    item = c.current
    image = item.image_layer
    viewer.layers.selection.active = image
    cid = item.table.ids()[0]
    c.select(cid)
    wait(w)
    # shown: the keys are ours, and napari's help line does not offer its own "2"
    assert "<2>" not in viewer.help and "cellseek keys" in viewer.help
    before = c.session.cell(cid)["label"]
    # the dock hidden with its title bar's hide button
    dock = w.parentWidget()
    qtbot.mouseClick(dock.titleBarWidget().hide_button, LEFT)
    qtbot.waitUntil(lambda: not w.isVisibleTo(w.window()), timeout=5_000)
    mode = image.mode
    qtbot.keyClick(_canvas(viewer), Qt.Key.Key_2)
    wait(w)
    assert c.session.cell(cid)["label"] == before  # not relabelled by a hidden panel
    assert image.mode == "transform" != mode  # napari's own key works again
    assert "cellseek keys" not in viewer.help and "<1>" in viewer.help
    # shown again: the keys are ours again
    image.mode = mode
    dock.show()
    qtbot.waitUntil(lambda: w.isVisibleTo(w.window()), timeout=5_000)
    qtbot.keyClick(_canvas(viewer), Qt.Key.Key_2)
    wait(w)
    assert c.session.cell(cid)["label"] == c.classes[1].name and image.mode == mode
    assert "cellseek keys" in viewer.help


# ---------------------------------------------------------------------------- item 4
def test_new_refuses_a_preset_without_weights_and_keeps_the_open_set(no_weights, plugin_widget,
                                                                     wait, qtbot, tmp_path,
                                                                     notes, monkeypatch):
    from cellseek.zoo import PRESETS, weights_available

    if all(weights_available(m)[0] for m in PRESETS["paper"]):
        pytest.skip("this machine has the weights of the 'paper' preset")
    w = plugin_widget
    c = w.controller
    first = tmp_path / "first.cellseek"
    w.reference.new_store(first)
    wait(w)
    w.models.preset.setCurrentText("paper")
    second = tmp_path / "second.cellseek"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(second), "")))
    from qtpy.QtWidgets import QPushButton

    button = next(b for b in w.reference.findChildren(QPushButton) if b.text() == "New…")
    qtbot.mouseClick(button, LEFT)
    w.reference.add_bundled_crops()  # asked for meanwhile: dropped with the refused set
    wait(w)
    assert not second.exists()
    assert c.session is not None and c.session.store.path == first
    assert c.session.store.n_cells() == 0
    (message,) = notes.errors
    notes.clear()
    assert "\n" not in message and "paper" in message and "sam_vit_b" in message
    assert "'light' preset" in message and "no reference set was created" in message
    assert message.count(". ") <= 1, message  # one sentence after "... failed:"


# ---------------------------------------------------------------------------- item 5
def test_the_status_line_says_what_is_true(suggested, wait, qtbot):
    w = suggested
    viewer, c = w.viewer, w.controller
    item = c.current
    canvas = _canvas(viewer)
    w.reference.name_edit.setText("HT1080")
    w.reference._add()
    wait(w)
    key = c.class_names().index("HT1080") + 1
    cid = item.table.ids()[0]
    c.select(cid)
    wait(w)
    qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{key}"))
    wait(w)
    # nothing runs: no "waits"; the class name keeps its case
    assert "waits" not in w.status.text() and "waits" not in viewer.status
    assert c.session.cell(cid)["label"] == "HT1080"
    assert "HT1080" in w.status.text() and "ht1080" not in w.status.text()
    # a key without a class says so, and the next action takes the notice away
    qtbot.keyClick(canvas, Qt.Key.Key_9)
    assert "no class 9" in w.status.text()
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    wait(w)
    assert "no class 9" not in w.status.text() and "no class 9" not in viewer.status
    # the progress bar never reads 100 % while a stack is being segmented
    seen = []
    bar = w.progress
    bar.valueChanged.connect(lambda v: seen.append((v, bar.maximum(), c.runner.running)))
    w.segment.run(whole_stack=True)
    w.suggest.run("stack")  # waits behind the segmentation: said while it waits
    assert "Suggestion waits until segmentation has finished" in w.status.text()
    assert "waits" not in viewer.status  # napari's status bar keeps no "waits"
    wait(w)
    running = [(v, m) for v, m, job in seen if job is not None]
    assert running and not [(v, m) for v, m in running if m and v >= m], running
    assert "waits" not in w.status.text()
    # the dock closed: napari's status bar says nothing of cellseek's
    w.segment.run(whole_stack=True)
    w.suggest.run("stack")
    w.parentWidget().destroyOnClose()
    qtbot.wait(200)
    assert "waits" not in viewer.status and "cellseek" not in viewer.status


# ---------------------------------------------------------------------------- item 6
def test_one_vocabulary_in_hover_panel_and_files(suggested, wait, qtbot, tmp_path,
                                                 monkeypatch):
    from cellseek.types import CELL_STATES

    w = suggested
    c = w.controller
    item = c.current
    features = item.cells_layer.features
    states = dict(zip(features["cell_id"], features["state"]))
    guesses = dict(zip(features["cell_id"], features["best_guess"]))
    uncertain = [cid for cid in item.table.ids()
                 if c.suggestions[cid].confidence < c.threshold]
    assert uncertain and all(states[cid] == "uncertain" for cid in uncertain)
    assert all(guesses[cid] == c.suggestions[cid].best_label for cid in uncertain)
    assert set(features["state"][1:]) <= set(CELL_STATES)
    # the panel names one state per cell: uncertain here ...
    c.select(uncertain[0])
    wait(w)
    text = w.neighbours.info.text()
    assert "uncertain: best guess" in text and "suggested" not in text
    share = c.suggestions[uncertain[0]].votes[c.suggestions[uncertain[0]].best_label]
    assert f"share {share:.2f}" in text  # the confidence is explained, not set beside votes
    # ... and confirmed once confirmed (no "uncertain" beside it)
    c.labelling.label_cells([uncertain[0]], c.classes[0].name)
    wait(w)
    text = w.neighbours.info.text()
    assert f"confirmed: <b>{c.classes[0].name}</b> (by you)" in text
    assert "uncertain" not in text and "suggested" not in text
    # the embedding said what happened: cells embedded, not "in the reference set"
    assert not [n for n in w.status.text().split(".") if "are in the reference set" in n]
    # the exported cells table speaks of classes, with the same states
    export = tmp_path / "export"
    w.reference.export(export)
    wait(w)
    with open(export / "cells.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {"class", "class_source", "state", "suggestion", "confidence", "best_guess"} <= \
        set(rows[0])
    assert not {"label", "label_source", "best_label"} & set(rows[0])
    assert {r["state"] for r in rows} <= set(CELL_STATES) and \
        "uncertain" in {r["state"] for r in rows}
    # so does the table saved beside the cells layer
    saved = item.cells_layer.save(str(tmp_path / "layer.tif"), plugin="cellseek")
    with open(tmp_path / "layer_cells.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert saved and {"class", "state", "best_guess"} <= set(table[0])
    assert {r["state"] for r in table} <= set(CELL_STATES)


# ---------------------------------------------------------------------------- item 7
def test_messages_are_one_short_line(no_weights, plugin_widget, wait, qtbot, tmp_path, notes):
    w = plugin_widget
    w.reference.new_store(tmp_path / "ref.cellseek")
    wait(w)
    # click-to-segment without SAM weights
    w.segment.click_mode.setChecked(True)
    (toast,) = [n for n in notes.all if "Click-to-segment" in n]
    assert len(toast) < 200 and "\n" not in toast and "auto" not in toast, toast
    assert "cellseek models pull sam_" in toast and toast.count("SAM weights") <= 1
    # segmentation with SAM without weights
    w.segment.method.setCurrentText("sam")
    w.segment.run()
    wait(w)
    (error,) = notes.errors
    notes.clear()
    assert len(error) < 220 and "auto" not in error and error.count("weights") <= 2, error
    # an export into a folder that holds files: said in the window's words
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    w.reference.export(full)
    wait(w)
    (error,) = notes.errors
    notes.clear()
    assert "--overwrite" not in error and str(full) in error and "empty" in error
    assert [p.name for p in full.iterdir()] == ["notes.txt"]


def test_damaged_files_of_a_dropped_folder_are_named(make_napari_viewer, tmp_path):
    from _plugin import register_manifest
    from PIL import Image

    register_manifest()
    folder = tmp_path / "drop"
    folder.mkdir()
    Image.fromarray(np.full((40, 50), 90, np.uint8)).save(folder / "good.png")
    (folder / "broken.tif").write_bytes(b"II*\x00this is not a tiff")
    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match="broken.tif"):
        viewer.open(str(folder), plugin="cellseek")
    assert len(viewer.layers) == 1


# ---------------------------------------------------------------------------- item 10
def _extent(artist, renderer):
    return artist.get_window_extent(renderer)


def test_plots_show_their_data(suggested, wait, qtbot, make_napari_viewer, tmp_path):
    w = suggested
    c = w.controller
    w.tabs.setCurrentWidget(w.plots)
    w.plots.update_plots()
    wait(w)
    plots = w.plots
    renderer = plots.canvas.get_renderer()
    plots.canvas.draw()
    figure = plots.figure.bbox
    for ax in (plots.ax_comp, plots.ax_map):
        legend = ax.get_legend()
        box, area = _extent(legend, renderer), _extent(ax, renderer)
        assert box.x0 >= area.x1 - 1 or box.y1 <= area.y0 + 1, "the legend covers the data"
        assert figure.contains(box.x0, box.y0) and figure.contains(box.x1 - 1, box.y1 - 1)
        title = _extent(ax.title, renderer)
        assert title.x0 >= -1 and title.x1 <= figure.x1 + 1 and title.y1 <= figure.y1 + 1
    # the map's legend: one colour per class
    handles = plots.ax_map.get_legend().legend_handles
    named = {h.get_label(): h.get_color() for h in handles}
    classes = [n for n in c.colours if n in named]
    assert len(classes) >= 2
    from matplotlib.colors import to_rgb

    assert len({tuple(np.round(to_rgb(named[n]), 3)) for n in classes}) == len(classes)
    # a one-plane image: one bar per class, no time course
    from cellseek._napari.widget import CellseekWidget

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.asarray(w.viewer.layers[0].data[0]), rgb=True, name="one field")
    w2 = CellseekWidget(viewer)
    viewer.window.add_dock_widget(w2, area="right")
    w2.segment.method.setCurrentText("classical")
    w2.segment.run()
    w2.reference.new_store(tmp_path / "one.cellseek")
    w2.reference.add_bundled_crops()
    w2.suggest.run("plane")
    wait(w2)
    w2.tabs.setCurrentWidget(w2.plots)
    w2.plots.update_plots()
    wait(w2)
    ax = w2.plots.ax_comp
    comp = w2.plots.comp
    assert len(comp.frames) == 1 and len(ax.patches) == len(comp.classes)
    assert "frame" not in ax.get_title() and "frame" not in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(comp.classes)
    w2.cleanup()
