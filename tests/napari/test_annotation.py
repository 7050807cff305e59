"""Pure helpers of cellseek.annotation (no Qt, no napari)."""

from __future__ import annotations

import numpy as np
import pytest

from cellseek.annotation.cells import CellTable, unique_offset
from cellseek.annotation.colours import (
    CONFIRMED_ALPHA,
    PALETTE,
    SUGGESTED_ALPHA,
    UNLABELLED,
    cell_colour_table,
    class_colours,
    hex_colour,
)
from cellseek.annotation.composition import composition
from cellseek.annotation.embedding_map import embedding_map, pca_2d
from cellseek.annotation.review import ReviewQueue, above_threshold, shown_label, uncertain_first
from cellseek.types import Suggestion


def _cell(i, value, t=0, z=0, label=None, suggestion=None, confidence=None):
    return {"id": i, "label_value": value, "t": t, "z": z, "label": label,
            "suggestion": suggestion, "confidence": confidence, "centroid": (1.0, 2.0)}


def test_class_colours_are_stable_and_distinct():
    first = class_colours(["b", "a"])
    assert first == {"b": PALETTE[0], "a": PALETTE[1]}
    again = class_colours(["a", "c", "b"], known=first)
    assert again["a"] == first["a"] and again["b"] == first["b"] and again["c"] == PALETTE[2]
    many = class_colours([f"c{i}" for i in range(30)])
    assert len(set(many.values())) == 30


def test_cell_colour_table_by_state_and_threshold():
    colours = {"x": (1.0, 0.0, 0.0)}
    cells = [_cell(1, 5, label="x"), _cell(2, 6, suggestion="x", confidence=0.9),
             _cell(3, 7, suggestion="x", confidence=0.2), _cell(4, 8)]
    table = cell_colour_table(cells, colours, threshold=0.5)
    assert table[5] == (1.0, 0.0, 0.0, CONFIRMED_ALPHA)
    assert table[6] == (1.0, 0.0, 0.0, SUGGESTED_ALPHA)
    assert table[7][:3] == UNLABELLED and table[8][:3] == UNLABELLED
    assert hex_colour((1, 0.5, 0)) == "#ff8000"


def test_unique_offset_keeps_order_and_does_not_modify_input():
    lab = np.array([[0, 3, 3], [7, 0, 1]])
    before = lab.copy()
    out = unique_offset(lab, 10)
    assert np.array_equal(lab, before) and out.dtype == np.int32
    assert np.array_equal(out, [[0, 12, 12], [13, 0, 11]])


def test_cell_table_lookups_and_features():
    table = CellTable([_cell(1, 5, t=0, label="x"), _cell(2, 6, t=1, suggestion="y",
                                                          confidence=0.4)])
    assert table.id_of(6) == 2 and table.id_of(0) is None and table.id_of(99) is None
    assert table.ids_in_planes([(1, 0)]) == [2] and table.planes() == {(0, 0), (1, 0)}
    feats = table.features()
    assert feats["index"] == [0, 5, 6]
    assert feats["class"] == ["", "x", "y"] and feats["state"][1:] == ["confirmed", "suggested"]
    # a suggestion hidden below the threshold leaves the cell uncertain (the glossary's word,
    # issue 22), with its best guess; a cell never suggested is unlabelled
    hidden = table.features({2: {"suggestion": None}})
    assert hidden["state"][2] == "uncertain" and hidden["best_guess"][2] == "y"
    assert hidden["class"][2] == ""
    assert CellTable([_cell(3, 8)]).features()["state"][1] == "unlabelled"
    table.set_state(2, label="y")
    assert table.cell(2)["label"] == "y"


def test_composition_counts_and_fractions():
    cells = [_cell(1, 1, t=0, label="a"), _cell(2, 2, t=0, suggestion="b", confidence=0.9),
             _cell(3, 3, t=1, suggestion="b", confidence=0.1), _cell(4, 4, t=1, label="a")]
    comp = composition(cells, threshold=0.5)
    # cell 3 was suggested below the threshold: uncertain, the glossary's word (issue 22)
    assert comp.frames == (0, 1) and comp.classes == ("a", "b", "uncertain")
    assert comp.counts.tolist() == [[1, 1, 0], [1, 0, 1]]
    assert np.allclose(comp.fractions.sum(axis=1), 1)
    confirmed = composition(cells, suggestions=False, unlabelled=False)
    assert confirmed.classes == ("a",) and confirmed.counts.tolist() == [[1], [1]]
    assert composition(cells, axis="z").frames == (0,)
    with pytest.raises(ValueError):
        composition(cells, axis="c")


def test_pca_map_separates_groups_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.1, (20, 8)), rng.normal(3, 0.1, (20, 8))])
    xy = pca_2d(x)
    assert xy.shape == (40, 2)
    assert abs(xy[:20, 0].mean() - xy[20:, 0].mean()) > 5
    assert np.array_equal(xy, pca_2d(x)) and np.allclose(embedding_map(x), xy, atol=1e-4)
    assert embedding_map(x, "umap").shape == (40, 2)  # PCA when umap is absent
    assert pca_2d(np.ones((1, 3))).tolist() == [[0.0, 0.0]]


def _s(label, conf, ent=0.0):
    return Suggestion(label=label if conf >= 0.6 else None, confidence=conf, entropy=ent,
                      best_label=label)


def test_threshold_decisions_and_review_order():
    sugg = {1: _s("a", 0.9), 2: _s("b", 0.3), 3: _s("a", 0.5), 4: Suggestion(None, 0.0, 0.0)}
    assert shown_label(sugg[3], 0.4) == "a" and shown_label(sugg[3], 0.6) is None
    assert above_threshold(sugg, 0.5) == ([1, 3], ["a", "a"])
    assert above_threshold(sugg, 0.5, skip={1}) == ([3], ["a"])
    assert uncertain_first(sugg, 0.6) == [4, 2, 3, 1]


def test_review_queue_skips_done_cells():
    q = ReviewQueue([4, 2, 3])
    assert q.next() == 4 and q.next() == 2
    q.mark_done([3])
    assert q.next() is None and q.current() == 2
    assert q.previous() == 4 and len(q) == 2
    q.unmark([3])
    assert q.goto(3) and q.current() == 3 and not q.goto(99)


def test_outline_colours_by_state_and_background():
    from cellseek.annotation.colours import (
        UNLABELLED_ALPHA,
        UNLABELLED_ON_BRIGHT,
        UNLABELLED_ON_DARK,
        cell_colour,
        class_hex,
        unlabelled_colour,
    )

    colours = {"x": (1.0, 0.0, 0.0)}
    assert unlabelled_colour(0.8) == UNLABELLED_ON_BRIGHT and unlabelled_colour(0.2) == \
        UNLABELLED_ON_DARK
    confirmed = cell_colour(_cell(1, 1, label="x"), colours)
    suggested = cell_colour(_cell(2, 2, suggestion="x", confidence=0.9), colours, threshold=0.5)
    plain = cell_colour(_cell(3, 3), colours, unlabelled=UNLABELLED_ON_DARK)
    assert confirmed[:3] == suggested[:3] == (1.0, 0.0, 0.0)
    assert confirmed[3] == 1.0 and suggested[3] < 0.6  # confirmed solid, suggested faded
    assert plain == (*UNLABELLED_ON_DARK, UNLABELLED_ALPHA)
    assert class_hex("x", colours) == "#ff0000" and class_hex(None, colours) == class_hex(
        "unknown", colours) == hex_colour(UNLABELLED)


def test_relabel_planes_and_stacks():
    from cellseek.annotation.cells import largest_value, relabel_planes, stack_from_planes

    a = np.array([[0, 5, 5], [9, 0, 0]])
    b = np.array([[2, 0, 0], [0, 0, 2]])
    planes, top = relabel_planes({(1, 0): b, (0, 0): a}, 10)
    assert top == 13
    assert planes[(0, 0)].tolist() == [[0, 11, 11], [12, 0, 0]]  # in plane order, above 10
    assert planes[(1, 0)].tolist() == [[13, 0, 0], [0, 0, 13]]
    stack = stack_from_planes((3, 2, 3), lambda key: (key[0],), planes)
    assert stack.dtype == np.int32 and stack[2].max() == 0 and stack[1].max() == 13
    assert largest_value(stack) == 13 and largest_value(stack, [(1,)]) == 12
    assert largest_value(stack, [(0,), (1,), (2,)]) == 0
    assert largest_value(np.ones((2, 2))) == 1 and largest_value(np.ones((2, 2)), [()]) == 0


def test_cell_table_planes_and_partial_features():
    table = CellTable([_cell(1, 5, t=0), _cell(2, 6, t=1), _cell(3, 7, t=1)])
    assert table.ids_in_plane((1, 0)) == [2, 3] and table.ids_in_plane((4, 0)) == []
    table.update([_cell(3, 7, t=0)])  # a cell that moved plane leaves its old one
    assert table.ids_in_plane((1, 0)) == [2] and table.ids_in_plane((0, 0)) == [1, 3]
    part = table.features(cell_ids=[3])
    assert part["index"] == [0, 7] and part["cell_id"] == [-1, 3]


def test_class_infos_give_keys_up_to_nine():
    from cellseek.annotation.classes import class_infos

    names = [f"c{i}" for i in range(11)]
    infos = class_infos(names, class_colours(names), {"c0": 3})
    assert [i.key for i in infos] == [1, 2, 3, 4, 5, 6, 7, 8, 9, None, None]
    assert infos[0].count == 3 and infos[1].count == 0 and infos[0].colour == PALETTE[0]
